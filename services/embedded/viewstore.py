"""The embedded view store: customer views, identity index and timelines in SQLite.

A ``SQLiteTrackingRecorder`` from the eventsourcing library, so every batch of view
changes is committed in the same transaction as the tracking record of the last log
position it includes: after a crash the runner resumes from exactly there, and no event
is ever folded twice or skipped (exactly-once projection).

Tables: ``customer_views`` (stored view state as JSON), ``identifiers`` (kind, value →
customer), ``timeline`` (customer → log positions by event time), ``identity_conflicts``
and ``dead_letters`` (events the projection could not apply, with the reason).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import structlog
from eventsourcing.persistence import Tracking
from eventsourcing.sqlite import SQLiteConnection, SQLiteConnectionPool, SQLiteDatastore, SQLiteTrackingRecorder

from projections.identity import Identifier
from projections.lifecycle.stages import Transition, transition_id
from projections.nbc.document import trigger_document
from projections.nbc.state import Fired, Outcome
from projections.segments.membership import Change as SegmentChange
from projections.value.rfm_cells import Cell, Change
from services.ports import History, history
from services.embedded import segment_store

__all__ = ["ViewChanges", "ViewStore", "ViewSnapshot", "TRACKING_NAME", "VIEW_FORMAT", "open_current", "digest_row"]

TRACKING_NAME = "touchstream"  # the log application's name, as in the tracking table
# The stored view's format: bumped when the fold derives something new from the same log
# (2: lifecycle stages and RFM cells; 3: next-best-contact state, triggers and figures; 4: bounded
# states, see projections.view.document.STATE_FORMAT; 5: distinct purchase days).
# A store of an older format is rebuilt from the log.
VIEW_FORMAT = 5


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


class ViewStore(SQLiteTrackingRecorder):
    def __init__(self, path: Path, *, lock_timeout_seconds: int = 2):
        path.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(_ViewDatastore(path, lock_timeout_seconds))
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
            # a rowid table: view states are kilobytes, too large for WITHOUT ROWID pages
            "CREATE TABLE IF NOT EXISTS customer_views ("
            "customer_id TEXT PRIMARY KEY, state BLOB NOT NULL, position INTEGER NOT NULL)",
            "CREATE TABLE IF NOT EXISTS identifiers ("
            "kind TEXT, value TEXT, customer_id TEXT NOT NULL, PRIMARY KEY (kind, value)) "
            "WITHOUT ROWID",
            "CREATE TABLE IF NOT EXISTS timeline ("
            "customer_id TEXT, occurred_at TEXT, position INTEGER, "
            "PRIMARY KEY (customer_id, occurred_at, position)) WITHOUT ROWID",
            "CREATE TABLE IF NOT EXISTS identity_conflicts ("
            "position INTEGER PRIMARY KEY, event_id TEXT, customer_id TEXT, detail BLOB)",
            "CREATE TABLE IF NOT EXISTS dead_letters ("
            "position INTEGER PRIMARY KEY, event_id TEXT, reason TEXT, record BLOB)",
            # lifecycle: the deadline index (a tick reads only the customers due), the
            # transition log (the feed's cursor is its rowid), customers per stage, and
            # the runner's clock (the latest tick folded)
            "CREATE TABLE IF NOT EXISTS lifecycle_deadlines (customer_id TEXT PRIMARY KEY, due_at INTEGER NOT NULL)",
            "CREATE INDEX IF NOT EXISTS lifecycle_deadlines_due ON lifecycle_deadlines (due_at, customer_id)",
            "CREATE TABLE IF NOT EXISTS lifecycle_transitions ("
            "feed INTEGER PRIMARY KEY, transition_id TEXT UNIQUE NOT NULL, customer_id TEXT NOT NULL, "
            "sequence INTEGER, at INTEGER, from_stage TEXT, to_stage TEXT, reason TEXT, cause TEXT, "
            "dwell INTEGER, position INTEGER)",
            "CREATE INDEX IF NOT EXISTS lifecycle_transitions_at ON lifecycle_transitions (at)",
            "CREATE TABLE IF NOT EXISTS lifecycle_stages (stage TEXT PRIMARY KEY, customers INTEGER NOT NULL)",
            "CREATE TABLE IF NOT EXISTS runner_state (name TEXT PRIMARY KEY, value INTEGER)",
            # the portfolio's RFM cells (projections.value.rfm_cells): customers and revenue per
            # (last purchase day, frequency bucket, monetary bucket)
            "CREATE TABLE IF NOT EXISTS rfm_cells (r INTEGER, f INTEGER, m INTEGER, customers INTEGER NOT NULL, "
            "revenue INTEGER NOT NULL, PRIMARY KEY (r, f, m)) WITHOUT ROWID",
            # next best contact: the trigger feed (cursor = feed), per-rule figures, the
            # outcomes recorded, and the delivery cursors of the channel dispatchers
            "CREATE TABLE IF NOT EXISTS nbc_triggers (feed INTEGER PRIMARY KEY, trigger_id TEXT UNIQUE NOT NULL, "
            "customer_id TEXT NOT NULL, channel TEXT NOT NULL, rule TEXT NOT NULL, version INTEGER NOT NULL, "
            "at INTEGER NOT NULL, document BLOB NOT NULL, position INTEGER NOT NULL)",
            "CREATE INDEX IF NOT EXISTS nbc_triggers_channel ON nbc_triggers (channel, feed)",
            "CREATE INDEX IF NOT EXISTS nbc_triggers_customer ON nbc_triggers (customer_id, feed)",
            "CREATE INDEX IF NOT EXISTS nbc_triggers_at ON nbc_triggers (at)",
            "CREATE TABLE IF NOT EXISTS nbc_figures (rule TEXT, version INTEGER, channel TEXT, figure TEXT, "
            "count INTEGER NOT NULL, PRIMARY KEY (rule, version, channel, figure)) WITHOUT ROWID",
            "CREATE TABLE IF NOT EXISTS nbc_outcomes (trigger_id TEXT, outcome TEXT, customer_id TEXT, "
            "rule TEXT, version INTEGER, channel TEXT, at INTEGER, event_id TEXT, position INTEGER, "
            "PRIMARY KEY (trigger_id, outcome)) WITHOUT ROWID",
            "CREATE TABLE IF NOT EXISTS delivery_cursors (name TEXT PRIMARY KEY, cursor TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS delivered_triggers (trigger_id TEXT PRIMARY KEY) WITHOUT ROWID",
            "CREATE TABLE IF NOT EXISTS delivery_dead_letters (trigger_id TEXT PRIMARY KEY, channel TEXT NOT NULL, "
            "at TEXT NOT NULL, letter BLOB NOT NULL)",
            # fitted models (services.value): written by the refit job, not by the runner
            "CREATE TABLE IF NOT EXISTS value_models (name TEXT PRIMARY KEY, body BLOB NOT NULL)",
            *segment_store.TABLES,  # segment members, counts, entry/exit feed (services.embedded.segment_store)
        ]

    # -- writing -------------------------------------------------------------------------
    def commit(self, changes: ViewChanges) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.executemany(
                "INSERT INTO customer_views VALUES (?,?,?) ON CONFLICT (customer_id) "
                "DO UPDATE SET state=excluded.state, position=excluded.position",
                [(cid, state, changes.position) for cid, state in changes.views.items()],
            )
            c.executemany("INSERT OR IGNORE INTO identifiers VALUES (?,?,?)", changes.links)
            c.executemany("INSERT OR IGNORE INTO timeline VALUES (?,?,?)", changes.timeline)
            c.executemany("INSERT OR IGNORE INTO identity_conflicts VALUES (?,?,?,?)", changes.conflicts)
            c.executemany("INSERT OR IGNORE INTO dead_letters VALUES (?,?,?,?)", changes.dead_letters)
            self._commit_lifecycle(c, changes)
            segment_store.commit(c, changes.segments, str(changes.position))
            self._insert_tracking(c, Tracking(TRACKING_NAME, changes.position))

    def _commit_lifecycle(self, c: Any, changes: ViewChanges) -> None:
        c.executemany(
            "INSERT OR IGNORE INTO lifecycle_transitions (transition_id, customer_id, sequence, at, from_stage, "
            "to_stage, reason, cause, dwell, position) VALUES (?,?,?,?,?,?,?,?,?,?)",
            [(transition_id(cid, t), cid, t.seq, t.at, t.from_stage, t.to_stage, t.reason, t.cause, dwell,
              changes.position) for cid, t, dwell in changes.transitions],
        )
        c.executemany(
            "INSERT INTO lifecycle_stages VALUES (?,?) ON CONFLICT (stage) DO UPDATE SET customers=customers+excluded.customers",
            list(changes.stages.items()),
        )
        c.executemany("DELETE FROM lifecycle_deadlines WHERE customer_id=?",
                      [(cid,) for cid, d in changes.deadlines.items() if d is None])
        c.executemany(
            "INSERT INTO lifecycle_deadlines VALUES (?,?) ON CONFLICT (customer_id) DO UPDATE SET due_at=excluded.due_at",
            [(cid, d) for cid, d in changes.deadlines.items() if d is not None],
        )
        c.executemany(
            "INSERT INTO rfm_cells VALUES (?,?,?,?,?) ON CONFLICT (r, f, m) DO UPDATE SET "
            "customers=customers+excluded.customers, revenue=revenue+excluded.revenue",
            [(*cell, change.customers, change.revenue) for cell, change in changes.rfm.items()],
        )
        if changes.clock is not None:
            c.execute("INSERT INTO runner_state VALUES ('clock', ?) ON CONFLICT (name) DO UPDATE SET value=excluded.value",
                      (changes.clock,))
        self._commit_contacts(c, changes)

    def _commit_contacts(self, c: Any, changes: ViewChanges) -> None:
        c.executemany(
            "INSERT OR IGNORE INTO nbc_triggers (trigger_id, customer_id, channel, rule, version, at, document, "
            "position) VALUES (?,?,?,?,?,?,?,?)",
            [(f.trigger_id, f.customer_id, f.channel, f.rule, f.version, f.at, dumps(trigger_document(f)),
              changes.position) for f in changes.triggers],
        )
        c.executemany(
            "INSERT OR IGNORE INTO nbc_outcomes VALUES (?,?,?,?,?,?,?,?,?)",
            [(o.trigger_id, o.outcome, o.customer_id, o.rule, o.version, o.channel, o.at, o.event_id,
              changes.position) for o in changes.outcomes],
        )
        c.executemany(
            "INSERT INTO nbc_figures VALUES (?,?,?,?,?) ON CONFLICT (rule, version, channel, figure) "
            "DO UPDATE SET count=count+excluded.count",
            [(*key, n) for key, n in changes.figures.items()],
        )

    # -- reading -------------------------------------------------------------------------
    def position(self) -> int:
        return self.max_tracking_id(TRACKING_NAME) or 0

    def clock(self) -> int | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT value FROM runner_state WHERE name='clock'")
            row = c.fetchone()
            return None if row is None else int(row[0])

    def due(self, at: int, limit: int) -> list[tuple[str, int]]:
        """The earliest deadlines at or before ``at``: (customer, due_at), at most ``limit``
        (an index range scan: cost grows with the customers due, not with all customers)."""
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT customer_id, due_at FROM lifecycle_deadlines WHERE due_at <= ? "
                      "ORDER BY due_at, customer_id LIMIT ?", (at, limit))
            return [(r[0], r[1]) for r in c.fetchall()]

    def purchase_histories(self, currency: str) -> list[History]:
        """(first purchase µs, last purchase µs, distinct purchase days, mean repeat-purchase
        value in ``currency``) of every customer who bought, read by SQLite's JSON functions
        (no state is parsed in Python)."""
        spend = ("(SELECT json_extract(t.value, '$[{i}]') FROM json_each(s, '{path}') AS t "
                 "WHERE json_extract(t.value, '$[0]') = :currency)")
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT json_extract(s, '$.purchase_days[0]'), json_extract(s, '$.purchase_days[1]'), "
                      "json_extract(s, '$.purchase_days[2]'), json_extract(s, '$.purchases'), "
                      f"{spend.format(i=1, path='$.currencies')}, {spend.format(i=2, path='$.currencies')}, "
                      f"{spend.format(i=1, path='$.purchase_days[3]')} "
                      "FROM (SELECT CAST(state AS TEXT) AS s FROM customer_views) "
                      "WHERE json_extract(s, '$.purchases') > 0",
                      {"currency": currency})
            return [history(days, first_day, bits, purchases, orders or 0, spent or "0", first_spend or "0")
                    for days, first_day, bits, purchases, orders, spent, first_spend in c.fetchall()]

    def states_after(self, after: str, limit: int) -> list[tuple[str, bytes]]:
        """(customer id, stored state) of the customers after ``after``, in customer-id order."""
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT customer_id, state FROM customer_views WHERE customer_id > ? "
                      "ORDER BY customer_id LIMIT ?", (after, limit))
            return [(r[0], bytes(r[1])) for r in c.fetchall()]

    def purchases_by_currency(self) -> dict[str, tuple[int, int, Decimal]]:
        """Per currency: (customers, purchases, spend) over every stored view (SQLite's JSON
        functions; the spend summed exactly in Python, one row per customer and currency)."""
        out: dict[str, tuple[int, int, Decimal]] = {}
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT json_extract(t.value, '$[0]'), json_extract(t.value, '$[1]'), "
                      "json_extract(t.value, '$[2]') "
                      "FROM customer_views, json_each(CAST(state AS TEXT), '$.currencies') AS t")
            for currency, count, revenue in c.fetchall():
                customers, purchases, spend = out.get(currency, (0, 0, Decimal(0)))
                out[currency] = (customers + 1, purchases + count, spend + Decimal(revenue))
        return out

    def save_model(self, name: str, body: bytes) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute("INSERT INTO value_models VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET body=excluded.body",
                      (name, body))

    def model(self, name: str) -> bytes | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT body FROM value_models WHERE name = ?", (name,))
            row = c.fetchone()
            return None if row is None else bytes(row[0])

    def rfm_cells(self) -> dict[Cell, Change]:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT r, f, m, customers, revenue FROM rfm_cells WHERE customers != 0 OR revenue != 0")
            return {(r[0], r[1], r[2]): Change(r[3], r[4]) for r in c.fetchall()}

    def triggers(self, *, after: int = 0, limit: int = 100, channel: str | None = None,
                 customer_id: str | None = None) -> list[tuple[int, bytes]]:
        """(feed, document JSON) of triggers after the feed cursor ``after``, oldest first."""
        sql = "SELECT feed, document FROM nbc_triggers WHERE feed > ? "
        params: list[Any] = [after]
        if channel is not None:
            sql += "AND channel = ? "
            params.append(channel)
        if customer_id is not None:
            sql += "AND customer_id = ? "
            params.append(customer_id)
        with self.datastore.transaction(commit=False) as c:
            c.execute(sql + "ORDER BY feed LIMIT ?", (*params, limit))
            return [(r[0], bytes(r[1])) for r in c.fetchall()]

    def contact_figures(self) -> dict[tuple[str, int, str, str], int]:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT rule, version, channel, figure, count FROM nbc_figures")
            return {(r[0], r[1], r[2], r[3]): r[4] for r in c.fetchall()}

    def count_delivered(self, rule: str, version: int, channel: str, trigger_id: str) -> bool:
        """A channel system acknowledged a trigger (the webhook dispatcher): counted once per
        trigger, however often it was delivered. Whether this call counted it."""
        with self.datastore.transaction(commit=True) as c:
            c.execute("SELECT 1 FROM delivered_triggers WHERE trigger_id = ?", (trigger_id,))
            if c.fetchone() is not None:
                return False
            c.execute("INSERT INTO delivered_triggers VALUES (?)", (trigger_id,))
            c.execute("INSERT INTO nbc_figures VALUES (?,?,?,'delivered',1) ON CONFLICT (rule, version, channel, "
                      "figure) DO UPDATE SET count=count+1", (rule, version, channel))
            return True

    def delivery_cursor(self, name: str) -> str | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT cursor FROM delivery_cursors WHERE name = ?", (name,))
            row = c.fetchone()
            return None if row is None else str(row[0])

    def save_delivery_cursor(self, name: str, cursor: str) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute("INSERT INTO delivery_cursors VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET "
                      "cursor=excluded.cursor", (name, cursor))

    def store_delivery_dead_letter(self, trigger_id: str, channel: str, at: str, letter: bytes) -> None:
        """A trigger a channel's webhook gave up on (the same trigger twice is one letter)."""
        with self.datastore.transaction(commit=True) as c:
            c.execute("INSERT OR IGNORE INTO delivery_dead_letters VALUES (?,?,?,?)", (trigger_id, channel, at, letter))

    def delivery_dead_letters(self, channel: str | None, limit: int) -> list[bytes]:
        sql = "SELECT letter FROM delivery_dead_letters "
        params: list[Any] = []
        if channel is not None:
            sql += "WHERE channel = ? "
            params.append(channel)
        with self.datastore.transaction(commit=False) as c:
            c.execute(sql + "ORDER BY at DESC LIMIT ?", (*params, limit))
            return [bytes(r[0]) for r in c.fetchall()]

    def stage_counts(self) -> dict[str, int]:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT stage, customers FROM lifecycle_stages WHERE customers != 0 ORDER BY stage")
            return {r[0]: r[1] for r in c.fetchall()}

    def transitions(self, *, after: int = 0, limit: int = 100, customer_id: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM lifecycle_transitions WHERE feed > ? "
        params: list[Any] = [after]
        if customer_id is not None:
            sql += "AND customer_id = ? "
            params.append(customer_id)
        with self.datastore.transaction(commit=False) as c:
            c.execute(sql + "ORDER BY feed LIMIT ?", (*params, limit))
            return [dict(r) for r in c.fetchall()]

    def transitions_between(self, start: int, end: int) -> list[tuple[str, str, int]]:
        """(from, to, dwell µs) of transitions with ``start <= at < end``."""
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT from_stage, to_stage, dwell FROM lifecycle_transitions WHERE at >= ? AND at < ?",
                      (start, end))
            return [(r[0], r[1], r[2]) for r in c.fetchall()]

    def states(self, customer_ids: Sequence[str]) -> dict[str, bytes]:
        return dict(self._select_in("SELECT customer_id, state FROM customer_views WHERE customer_id", customer_ids))

    def state(self, customer_id: str) -> bytes | None:
        return self.states([customer_id]).get(customer_id)

    def owners(self, identifiers: Iterable[Identifier]) -> dict[Identifier, str]:
        by_kind: dict[str, list[str]] = {}
        for kind, value in dict.fromkeys(identifiers):
            by_kind.setdefault(kind, []).append(value)
        found: dict[Identifier, str] = {}
        with self.datastore.transaction(commit=False) as c:
            for kind, values in by_kind.items():
                for i in range(0, len(values), 500):
                    chunk = values[i : i + 500]
                    c.execute(
                        f"SELECT value, customer_id FROM identifiers WHERE kind=? AND value IN "
                        f"({','.join('?' * len(chunk))})",
                        [kind, *chunk],
                    )
                    found.update({(kind, r[0]): r[1] for r in c.fetchall()})
        return found

    def timeline_positions(self, customer_id: str, *, limit: int, before: tuple[str, int] | None) -> list[tuple[str, int]]:
        """Newest first: (occurred_at, position) pairs strictly before ``before``."""
        sql = "SELECT occurred_at, position FROM timeline WHERE customer_id=? "
        params: list[Any] = [customer_id]
        if before is not None:
            sql += "AND (occurred_at, position) < (?, ?) "
            params += list(before)
        sql += "ORDER BY occurred_at DESC, position DESC LIMIT ?"
        with self.datastore.transaction(commit=False) as c:
            c.execute(sql, [*params, limit])
            return [(r[0], r[1]) for r in c.fetchall()]

    def rows(self, table: str, *, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        assert table in ("identity_conflicts", "dead_letters")
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT * FROM {table} WHERE position > ? ORDER BY position LIMIT ?", (after, limit))
            return [dict(r) for r in c.fetchall()]

    def count(self, table: str) -> int:
        assert table in ("customer_views", "identity_conflicts", "dead_letters", "identifiers")
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT COUNT(*) FROM {table}")
            return int(c.fetchone()[0])

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

    def _select_in(self, prefix: str, keys: Sequence[str]) -> list[tuple[Any, Any]]:
        out: list[tuple[Any, Any]] = []
        with self.datastore.transaction(commit=False) as c:
            for i in range(0, len(keys), 500):
                chunk = list(keys[i : i + 500])
                c.execute(f"{prefix} IN ({','.join('?' * len(chunk))})", chunk)
                out += [(r[0], r[1]) for r in c.fetchall()]
        return out


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


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


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
