"""The embedded event log: every accepted touchpoint, in order, in SQLite.

It is an ``eventsourcing`` application whose recorder is the library's SQLite
application recorder with one addition, ``append_new``: each touchpoint is its own
one-event stream whose id is derived from the sender's ``event_id``, so the library's
(originator_id, originator_version) primary key *is* the idempotency check, atomic with
the write. A re-sent event is not stored again and comes back as a duplicate. The
library's notification ids (SQLite rowids, assigned in commit order by the one writer)
are the global positions that projections track.

Contract: ``append`` returns only after the SQLite transaction committed (WAL, and
``synchronous=FULL`` set on every connection rather than left to the SQLite build's
default), so anything it reports as stored survives a crash and a power loss. Storage failures raise ``eventsourcing.persistence.PersistenceError``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import orjson
from eventsourcing.application import Application
from eventsourcing.persistence import Notification, StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteConnection, SQLiteConnectionPool
from eventsourcing.utils import get_topic

from projections.codec import format_instant

__all__ = ["Appended", "LoggedTouchpoint", "TouchpointRecorder", "TouchpointLog", "stream_id", "tick_document",
           "merge_document", "unmerge_document", "IDENTITY_TOPIC", "MERGE_KINDS", "MERGE_CAUSES"]

_NAMESPACE = uuid.UUID("0b7a6f52-52d4-4c6e-8f0c-3a8d6f1e9c21")
SCHEMA_VERSION = 1


def stream_id(event_id: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, event_id)


class Appended(NamedTuple):
    """Where a touchpoint is in the log, and whether it was already there (a duplicate:
    then ``position`` is the stored copy's)."""

    position: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class LoggedTouchpoint:
    position: int
    topic: str  # "touchpoint/<type>@<schema version>": the contract that wrote it
    state: bytes  # the canonical dict (projections.codec) as JSON

    def document(self) -> dict[str, Any]:
        """The canonical dict; raises orjson.JSONDecodeError on a damaged record."""
        return orjson.loads(self.state)


class _DurableConnections(SQLiteConnectionPool):
    def _create_connection(self) -> SQLiteConnection:
        connection = super()._create_connection()
        connection._sqlite_conn.execute("PRAGMA synchronous=FULL")
        return connection


class TouchpointRecorder(SQLiteApplicationRecorder):
    """The library's recorder plus idempotent appends and reads by position."""

    max_page_count: int = 0  # quota in pages; 0 = none

    def append_new(self, stored_events: Sequence[StoredEvent]) -> list[Appended]:
        """Insert what is not stored yet, in one transaction; report duplicates with the
        position of the copy already stored.

        One ``executemany`` and one range read instead of a statement per event: with a
        single writer, the rows this transaction inserted are exactly those after the
        previous maximum position, in insertion order.
        """
        insert = f"INSERT INTO {self.events_table_name} VALUES (?,?,?,?) ON CONFLICT DO NOTHING"
        rows = [(s.originator_id.hex, 1, s.topic, s.state) for s in stored_events]  # type: ignore[union-attr]
        with self.datastore.transaction(commit=True) as c:
            if self.max_page_count:
                c.execute(f"PRAGMA max_page_count = {int(self.max_page_count)}")
            c.execute(f"SELECT COALESCE(MAX(rowid), 0) FROM {self.events_table_name}")
            before = c.fetchone()[0]
            c.executemany(insert, rows)
            c.execute(f"SELECT originator_id, rowid FROM {self.events_table_name} WHERE rowid > ?", (before,))
            stored: dict[str, int] = dict(c.fetchall())
            missing = list({r[0] for r in rows} - stored.keys())  # stored by an earlier transaction
            originals = dict(self._positions_of(c, missing)) if missing else {}
        appended: list[Appended] = []
        first_copies: set[str] = set()
        for originator, *_ in rows:
            if originator in stored and originator not in first_copies:
                first_copies.add(originator)
                appended.append(Appended(stored[originator], False))
            else:  # stored before, or a second copy within this batch
                appended.append(Appended(stored.get(originator) or originals[originator], True))
        return appended

    def _positions_of(self, c: Any, originator_hexes: Sequence[str]) -> list[tuple[str, int]]:
        marks = ",".join("?" * len(originator_hexes))
        c.execute(
            f"SELECT originator_id, rowid FROM {self.events_table_name} WHERE originator_id IN ({marks})",
            list(originator_hexes),
        )
        return [(row[0], row[1]) for row in c.fetchall()]

    def positions_of(self, originator_ids: Sequence[uuid.UUID]) -> dict[str, int]:
        """Where already-stored streams sit in the log: originator id (hex) -> position."""
        with self.datastore.transaction(commit=False) as c:
            return dict(self._positions_of(c, [o.hex for o in originator_ids]))

    def read_after(self, after: int, limit: int) -> list[tuple[int, str, bytes]]:
        """(position, topic, state) after ``after``: the follower's hot path, without
        building UUIDs and Notification objects per record."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT rowid, topic, state FROM {self.events_table_name} WHERE rowid > ? ORDER BY rowid LIMIT ?",
                (after, limit),
            )
            return [(r[0], r[1], r[2]) for r in c.fetchall()]

    def select_positions(self, positions: Sequence[int]) -> list[Notification]:
        marks = ",".join("?" * len(positions))
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT rowid, * FROM {self.events_table_name} WHERE rowid IN ({marks})",
                list(positions),
            )
            rows = c.fetchall()
        by_id = {
            r["rowid"]: Notification(
                id=r["rowid"], originator_id=r["originator_id"],
                originator_version=r["originator_version"], topic=r["topic"], state=r["state"],
            )
            for r in rows
        }
        return [by_id[p] for p in positions if p in by_id]


class TouchpointLog(Application):
    """The append-only log of touchpoints (one SQLite file)."""

    name = "touchstream"

    def __init__(self, path: Path, *, lock_timeout_seconds: int = 2, max_bytes: int = 0):
        path.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(
            env={
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(path),
                "SQLITE_LOCK_TIMEOUT": str(lock_timeout_seconds),
                "APPLICATION_RECORDER_TOPIC": get_topic(TouchpointRecorder),
            }
        )
        self.touchpoints: TouchpointRecorder = self.recorder  # type: ignore[assignment]
        datastore, built_with = self.touchpoints.datastore, self.touchpoints.datastore.pool
        datastore.pool = _DurableConnections(db_name=str(path), lock_timeout=lock_timeout_seconds)
        built_with.close()  # the library's pool only created the table
        self.touchpoints.max_page_count = max_bytes // 4096 if max_bytes else 0

    def append(self, documents: Sequence[dict[str, Any]]) -> list[Appended]:
        """Durably append canonical touchpoints; per document its position, and whether
        the same event_id was already stored (then the stored copy's position)."""
        stored = [
            StoredEvent(
                originator_id=stream_id(d["event_id"]),
                originator_version=1,
                topic=_topic(d["type"]),
                state=orjson.dumps(d),
            )
            for d in documents
        ]
        return self.touchpoints.append_new(stored)

    def read(self, after: int, limit: int) -> list[LoggedTouchpoint]:
        return [LoggedTouchpoint(p, t, s) for p, t, s in self.touchpoints.read_after(after, limit)]

    def at_positions(self, positions: Sequence[int]) -> list[LoggedTouchpoint]:
        return [_logged(n) for n in self.touchpoints.select_positions(positions)] if positions else []

    def head(self) -> int:
        return self.touchpoints.max_notification_id() or 0


IDENTITY_TOPIC = "identity/"
MERGE_KINDS = ("customer_merged", "customer_unmerged")


def _topic(kind: str) -> str:
    """The contract a log record was written with: clock ticks and merges are events of their own."""
    if kind == "clock_tick":
        return f"clock/tick@{SCHEMA_VERSION}"
    if kind in MERGE_KINDS:
        return f"{IDENTITY_TOPIC}{kind}@{SCHEMA_VERSION}"
    return f"touchpoint/{kind}@{SCHEMA_VERSION}"


MERGE_CAUSES = ("operator", "conflict", "policy")
"""Who decided a merge: an operator naming both customers, an operator resolving a listed
identity conflict in one call, or the automatic merge policy (``projections.merge_policy``)."""


def merge_document(merge_id: str, survivor: str, absorbed: str, reason: str, actor: str,
                   received_at: datetime, *, cause: str = "operator",
                   evidence: dict[str, Any] | None = None) -> dict[str, Any]:
    """A merge as the log stores it (``projections.merge``): ``absorbed`` is shown as
    ``survivor``. ``evidence``: what the decision rested on (the conflict's event and the
    identifiers both customers claim; for the policy, the rule applied)."""
    if cause not in MERGE_CAUSES:
        raise ValueError(f"a merge's cause is one of {MERGE_CAUSES}, not {cause!r}")
    return {"event_id": f"merge/{merge_id}", "type": "customer_merged", "merge_id": merge_id, "survivor": survivor,
            "absorbed": absorbed, "reason": reason, "actor": actor, "cause": cause, "evidence": evidence,
            "received_at": format_instant(received_at)}


def unmerge_document(merge_id: str, reason: str, actor: str, received_at: datetime) -> dict[str, Any]:
    """An undone merge as the log stores it."""
    return {"event_id": f"unmerge/{merge_id}", "type": "customer_unmerged", "merge_id": merge_id, "reason": reason,
            "actor": actor, "received_at": format_instant(received_at)}


def tick_document(at: datetime, received_at: datetime) -> dict[str, Any]:
    """A clock tick as the log stores it; its id is its instant, so a tick appended twice
    is stored once."""
    moment = format_instant(at)
    return {"event_id": f"tick/{moment}", "type": "clock_tick", "at": moment, "received_at": format_instant(received_at)}


def _logged(n: Notification) -> LoggedTouchpoint:
    return LoggedTouchpoint(position=n.id, topic=n.topic, state=n.state)
