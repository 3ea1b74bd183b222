"""The unit of work over the embedded storage concerns: one transaction per runner batch.

``ViewStore`` is a ``SQLiteTrackingRecorder`` from the eventsourcing library, so every
batch of view changes is committed in the same transaction as the tracking record of the
last log position it includes: after a crash the runner resumes from exactly there, and
no event is ever folded twice or skipped (exactly-once projection). Each concern
(``services.embedded.storage``) owns its tables, its reads and its part of the batch;
this module owns only what ties them together: the tracking position, the runner's clock,
the stored format, and the snapshot ``touchstream replay`` compares at.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import structlog
from eventsourcing.persistence import Tracking
from eventsourcing.sqlite import SQLiteConnection, SQLiteConnectionPool, SQLiteDatastore, SQLiteTrackingRecorder

from services.embedded.storage.base import Concern, ViewChanges
from services.embedded.storage.contacts import Contacts
from services.embedded.storage.customers import Customers
from services.embedded.storage.dead_letters import DeadLetters
from services.embedded.storage.delivery import DeliveryLedger
from services.embedded.storage.identity import IdentityIndex
from services.embedded.storage.lifecycle import Lifecycle
from services.embedded.storage.segments import Segments
from services.embedded.storage.value import Value

__all__ = ["ViewChanges", "ViewStore", "ViewSnapshot", "TRACKING_NAME", "VIEW_FORMAT", "open_current", "digest_row"]

TRACKING_NAME = "touchstream"  # the log application's name, as in the tracking table
# The stored view's format: bumped when the fold derives something new from the same log
# (2: lifecycle stages and RFM cells; 3: next-best-contact state, triggers and figures; 4: bounded
# states, see projections.view.document.STATE_FORMAT; 5: distinct purchase days; 6: refunds).
# A store of an older format is rebuilt from the log.
VIEW_FORMAT = 6


class _ViewConnections(SQLiteConnectionPool):
    """Views can always be rebuilt from the log, and a view batch commits atomically with
    its tracking record, so losing the last batches on power loss only means folding them
    again: ``synchronous=NORMAL`` is safe here (the log itself stays FULL)."""

    def _create_connection(self) -> SQLiteConnection:
        connection = super()._create_connection()
        raw = connection._sqlite_conn
        raw.execute("PRAGMA synchronous=NORMAL")
        raw.execute("PRAGMA cache_size=-16384")  # 16 MiB per connection (the pool opens several)
        raw.execute("PRAGMA wal_autocheckpoint=20000")
        return connection


class _ViewDatastore(SQLiteDatastore):
    def __init__(self, path: Path, lock_timeout: int):
        super().__init__(str(path), lock_timeout=lock_timeout)
        self.pool = _ViewConnections(db_name=str(path), lock_timeout=lock_timeout)


class ViewStore(SQLiteTrackingRecorder):
    """views.sqlite: the storage concerns as attributes, and ``commit`` writing a batch to
    all of them with its tracking record, in one transaction."""

    def __init__(self, path: Path, *, lock_timeout_seconds: int = 2):
        path.parent.mkdir(parents=True, exist_ok=True)
        datastore = _ViewDatastore(path, lock_timeout_seconds)
        self.customers = Customers(datastore)
        self.identity = IdentityIndex(datastore)
        self.dead_letters = DeadLetters(datastore)
        self.lifecycle = Lifecycle(datastore)
        self.value = Value(datastore)
        self.contacts = Contacts(datastore)
        self.delivery = DeliveryLedger(datastore)
        self.segments = Segments(datastore)
        # the batch's writers, in the order a batch applies them
        self.concerns: tuple[Concern, ...] = (self.customers, self.identity, self.dead_letters, self.lifecycle,
                                              self.value, self.contacts, self.delivery, self.segments)
        super().__init__(datastore)
        self.create_table()
        self.format = self._format()

    def _format(self) -> int:
        """This store's view format; an empty store takes the current one."""
        with self.datastore.transaction(commit=True) as c:
            c.execute("SELECT value FROM runner_state WHERE name='view_format'")
            row = c.fetchone()
            if row is not None:
                return int(row[0])
            if self._max_tracking_id(TRACKING_NAME, c):
                return 1  # folded before the format was recorded
            c.execute("INSERT INTO runner_state VALUES ('view_format', ?)", (VIEW_FORMAT,))
            return VIEW_FORMAT

    @property
    def outdated(self) -> bool:
        return self.format < VIEW_FORMAT

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            # the store's format and the runner's clock (the latest tick folded)
            "CREATE TABLE IF NOT EXISTS runner_state (name TEXT PRIMARY KEY, value INTEGER)",
            *(table for concern in self.concerns for table in concern.TABLES),
        ]

    def commit(self, changes: ViewChanges) -> None:
        """The unit of work: every concern's part of the batch, the runner's clock and the
        tracking record of ``changes.position``, in one transaction (all or nothing)."""
        with self.datastore.transaction(commit=True) as c:
            for concern in self.concerns:
                concern.write(c, changes)
            if changes.clock is not None:
                c.execute("INSERT INTO runner_state VALUES ('clock', ?) ON CONFLICT (name) "
                          "DO UPDATE SET value=excluded.value", (changes.clock,))
            self._insert_tracking(c, Tracking(TRACKING_NAME, changes.position))

    def position(self) -> int:
        return self.max_tracking_id(TRACKING_NAME) or 0

    def clock(self) -> int | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT value FROM runner_state WHERE name='clock'")
            row = c.fetchone()
            return None if row is None else int(row[0])

    def digest(self) -> tuple[int, str]:
        """(position, SHA-256 over every view's stored state in customer order), read in one
        transaction so the two agree while the runner goes on: equal digests at one
        position mean byte-identical projections."""
        h = hashlib.sha256()
        with self.snapshot() as snapshot:
            for customer_id, state in snapshot.states():
                h.update(digest_row(customer_id, state))
        return snapshot.position, h.hexdigest()

    @contextmanager
    def snapshot(self) -> Iterator[ViewSnapshot]:
        """One read transaction, for as long as the context lasts: the position and every
        state as of one commit, whatever the runner commits meanwhile (WAL readers keep
        their snapshot; the WAL is not checkpointed past it until the context ends)."""
        with self.datastore.transaction(commit=False) as c:
            yield ViewSnapshot(self._max_tracking_id(TRACKING_NAME, c) or 0, c.sqlite_cursor.connection)


@dataclass(frozen=True)
class ViewSnapshot:
    """The views as of one commit (``ViewStore.snapshot``): its position and its states."""

    position: int
    _connection: sqlite3.Connection

    def states(self) -> Iterator[tuple[str, bytes]]:
        """(customer id, stored state) of every view, in customer id order, read lazily."""
        cursor = self._connection.cursor()
        try:
            cursor.execute("SELECT customer_id, state FROM customer_views ORDER BY customer_id")
            while rows := cursor.fetchmany(1000):
                yield from ((row[0], row[1]) for row in rows)
        finally:
            cursor.close()


def digest_row(customer_id: str, state: bytes) -> bytes:
    """What ``ViewStore.digest`` hashes of one view."""
    return customer_id.encode() + b"\0" + state + b"\n"


def open_current(path: Path, *, lock_timeout_seconds: int = 2) -> ViewStore:
    """The view store at ``path``; one of an older format is set aside (renamed with its
    format) and a new one is started, which the runner rebuilds from the log: views are
    derived data, and the log is the source of every one of them."""
    store = ViewStore(path, lock_timeout_seconds=lock_timeout_seconds)
    if not store.outdated:
        return store
    old = store.format
    store.datastore.close()
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            source.rename(path.with_name(f"{path.name}.format{old}{suffix}"))
    structlog.get_logger("touchstream.viewstore").warning("views_rebuilt_from_the_log", old_format=old,
                                                          new_format=VIEW_FORMAT)
    return ViewStore(path, lock_timeout_seconds=lock_timeout_seconds)
