"""Lifecycle stages: the deadline index, the transition feed and the customers per stage."""

from __future__ import annotations

from typing import Any

from projections.lifecycle.stages import transition_id
from services.embedded.storage.base import Concern, ViewChanges

__all__ = ["Lifecycle"]


class Lifecycle(Concern):
    """``lifecycle_deadlines`` (a tick reads only the customers due), ``lifecycle_transitions``
    (the feed's cursor is its rowid) and ``lifecycle_stages`` (customers per stage)."""

    TABLES = (
        "CREATE TABLE IF NOT EXISTS lifecycle_deadlines (customer_id TEXT PRIMARY KEY, due_at INTEGER NOT NULL)",
        "CREATE INDEX IF NOT EXISTS lifecycle_deadlines_due ON lifecycle_deadlines (due_at, customer_id)",
        "CREATE TABLE IF NOT EXISTS lifecycle_transitions ("
        "feed INTEGER PRIMARY KEY, transition_id TEXT UNIQUE NOT NULL, customer_id TEXT NOT NULL, "
        "sequence INTEGER, at INTEGER, from_stage TEXT, to_stage TEXT, reason TEXT, cause TEXT, "
        "dwell INTEGER, position INTEGER)",
        "CREATE INDEX IF NOT EXISTS lifecycle_transitions_at ON lifecycle_transitions (at)",
        "CREATE TABLE IF NOT EXISTS lifecycle_stages (stage TEXT PRIMARY KEY, customers INTEGER NOT NULL)",
        "CREATE TABLE IF NOT EXISTS clock_ticks (position INTEGER PRIMARY KEY, tick_id TEXT NOT NULL, at INTEGER NOT NULL)",
    )

    def write(self, c: Any, changes: ViewChanges) -> None:
        c.executemany(
            "INSERT OR IGNORE INTO lifecycle_transitions (transition_id, customer_id, sequence, at, from_stage, "
            "to_stage, reason, cause, dwell, position) VALUES (?,?,?,?,?,?,?,?,?,?)",
            [(transition_id(cid, t), cid, t.seq, t.at, t.from_stage, t.to_stage, t.reason, t.cause, dwell,
              changes.position) for cid, t, dwell in changes.transitions],
        )
        c.executemany("INSERT INTO lifecycle_stages VALUES (?,?) ON CONFLICT (stage) "
                      "DO UPDATE SET customers=customers+excluded.customers", list(changes.stages.items()))
        c.executemany("DELETE FROM lifecycle_deadlines WHERE customer_id=?",
                      [(cid,) for cid, d in changes.deadlines.items() if d is None])
        c.executemany("INSERT INTO lifecycle_deadlines VALUES (?,?) ON CONFLICT (customer_id) "
                      "DO UPDATE SET due_at=excluded.due_at",
                      [(cid, d) for cid, d in changes.deadlines.items() if d is not None])
        c.executemany("INSERT OR IGNORE INTO clock_ticks VALUES (?,?,?)", changes.ticks)

    def ticks_before(self, position: int) -> list[tuple[int, str, int]]:
        """Every clock tick folded before ``position``: (position, tick id, at µs), in log
        order — what a merge refolds the merged customers' events with."""
        with self.reading() as c:
            c.execute("SELECT position, tick_id, at FROM clock_ticks WHERE position < ? ORDER BY position", (position,))
            return [(r[0], r[1], r[2]) for r in c.fetchall()]

    def due(self, at: int, limit: int) -> list[tuple[str, int]]:
        """The earliest deadlines at or before ``at``: (customer, due_at), at most ``limit``
        (an index range scan: cost grows with the customers due, not with all customers)."""
        with self.reading() as c:
            c.execute("SELECT customer_id, due_at FROM lifecycle_deadlines WHERE due_at <= ? "
                      "ORDER BY due_at, customer_id LIMIT ?", (at, limit))
            return [(r[0], r[1]) for r in c.fetchall()]

    def stage_counts(self) -> dict[str, int]:
        with self.reading() as c:
            c.execute("SELECT stage, customers FROM lifecycle_stages WHERE customers != 0 ORDER BY stage")
            return {r[0]: r[1] for r in c.fetchall()}

    def transitions(self, *, after: int = 0, limit: int = 100, customer_id: str | None = None) -> list[dict[str, Any]]:
        rows = self.after("lifecycle_transitions", "*", "feed", after, limit, customer_id=customer_id)
        return [dict(r) for r in rows]

    def transitions_between(self, start: int, end: int) -> list[tuple[str, str, int]]:
        """(from, to, dwell µs) of transitions with ``start <= at < end``."""
        with self.reading() as c:
            c.execute("SELECT from_stage, to_stage, dwell FROM lifecycle_transitions WHERE at >= ? AND at < ?",
                      (start, end))
            return [(r[0], r[1], r[2]) for r in c.fetchall()]
