"""What every storage concern shares: its tables, the datastore, and its part of a batch."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

from eventsourcing.sqlite import SQLiteCursor, SQLiteDatastore

from projections.lifecycle.stages import Transition
from projections.nbc.state import Fired, Outcome
from projections.segments.membership import Change as SegmentChange
from projections.value.rfm_cells import Cell, Change

__all__ = ["Concern", "ViewChanges"]


@dataclass
class ViewChanges:
    """Everything one projection batch writes, committed atomically with ``position``."""

    position: int
    views: dict[str, bytes] = field(default_factory=dict)  # customer_id -> state JSON
    links: list[tuple[str, str, str]] = field(default_factory=list)  # kind, value, customer
    timeline: list[tuple[str, str, int]] = field(default_factory=list)  # customer, at, position
    conflicts: list[tuple[int, str, str, bytes]] = field(default_factory=list)
    dead_letters: list[tuple[int, str | None, str, bytes]] = field(default_factory=list)
    clock: int | None = None  # the latest clock tick folded (µs)
    visited: int = 0  # customers the batch's ticks re-evaluated
    tick_failures: int = 0  # customers a tick could not move (their state did not load): left due
    transitions: list[tuple[str, Transition, int]] = field(default_factory=list)  # (customer, it, dwell µs), fold order
    stages: dict[str, int] = field(default_factory=dict)  # customers per stage: the change
    deadlines: dict[str, int | None] = field(default_factory=dict)  # touched customers' next deadline
    rfm: dict[Cell, Change] = field(default_factory=dict)  # the portfolio's RFM cells: the change
    triggers: list[Fired] = field(default_factory=list)  # next-best-contact triggers, in fold order
    outcomes: list[Outcome] = field(default_factory=list)
    figures: dict[tuple[str, int, str, str], int] = field(default_factory=dict)  # per-rule counts: the change
    segments: list[SegmentChange] = field(default_factory=list)  # segment entries and exits
    ticks: list[tuple[int, str, int]] = field(default_factory=list)  # clock ticks folded: position, tick id, at µs
    removed: list[str] = field(default_factory=list)  # customers a merge absorbed: their views go
    merges: list[tuple[str, str, str, str, str, int, str, bytes | None, str]] = field(default_factory=list)
    # merge id, survivor, absorbed, reason, actor, position, cause, evidence JSON, at
    unmerges: list[tuple[str, int, str, str, str]] = field(default_factory=list)  # merge id, position, reason, actor, at
    outbox: list[tuple[str, bytes]] = field(default_factory=list)  # (event id, document JSON) to append to the log


class Concern:
    """One concern's tables: created with the others (``TABLES``), read through the shared
    datastore, and written by ``write`` inside the unit of work's transaction."""

    TABLES: ClassVar[tuple[str, ...]] = ()

    def __init__(self, datastore: SQLiteDatastore) -> None:
        self.datastore = datastore

    def write(self, c: Any, changes: ViewChanges) -> None:
        """This concern's part of a runner batch, in the caller's transaction ``c``
        (nothing: the concern is written outside runner batches, or only read)."""

    @contextmanager
    def reading(self) -> Iterator[SQLiteCursor]:
        with self.datastore.transaction(commit=False) as c:
            yield c

    def after(self, table: str, columns: str, cursor: str, after: int, limit: int,
              **equal: str | None) -> list[Any]:
        """Rows of ``table`` whose ``cursor`` column is beyond ``after``, in cursor order, at
        most ``limit``; each keyword a column that must equal its value (None: any)."""
        sql = f"SELECT {columns} FROM {table} WHERE {cursor} > ?"
        params: list[Any] = [after]
        for column, value in equal.items():
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        with self.reading() as c:
            c.execute(f"{sql} ORDER BY {cursor} LIMIT ?", (*params, limit))
            return list(c.fetchall())

    @contextmanager
    def writing(self) -> Iterator[SQLiteCursor]:
        """A transaction of its own, for writes made outside runner batches."""
        with self.datastore.transaction(commit=True) as c:
            yield c
