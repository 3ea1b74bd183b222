"""The projection runner: follows the log and folds it into the view store, in batches.

Each batch: read up to N log records after the tracked position, decode them, resolve
identities (``projections.identity``), fold each customer's events
(``projections.view.evolve``), then commit views, identity links, timeline rows,
conflicts, dead letters *and* the tracking position in one SQLite transaction.

Business rule: a record that cannot be decoded or folded is never dropped and never
stops the runner: it goes to ``dead_letters`` with the reason, and the position moves on.
Per-event I/O is what would limit throughput, so reads and writes are per batch, and
recently folded views are kept in a bounded cache (the runner is the only writer).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import orjson
import structlog

from projections.codec import format_instant, from_dict, instant
from projections.identity import identifiers_of, resolve
from projections.lifecycle import DEFAULT as LIFECYCLE_DEFAULT
from projections.lifecycle import LifecycleConfig
from projections.nbc_engine import ContactEngine, fold_event, fold_tick
from projections.segments import Memo, SegmentSet
from projections.touchpoints import Touchpoint
from projections.view import initial_view, micros
from projections.view_document import to_state
from services import metrics
from services.nbc.figures import count_contact_figures
from services.eventlog import LoggedTouchpoint, TouchpointLog
from services.batch_ledger import BatchLedger, due
from services.view_cache import ViewCache
from services.viewstore import ViewChanges, ViewStore, dumps

__all__ = ["ProjectionRunner", "fold_batch"]

log = structlog.get_logger("touchstream.runner")


class Tick(NamedTuple):
    tick_id: str
    at: int  # µs


def _decode(record: LoggedTouchpoint) -> Touchpoint | Tick:
    document = record.document()
    if record.topic.startswith("clock/"):
        return Tick(document["event_id"], micros(instant(document["at"])))
    return from_dict(document)


def fold_batch(records: list[LoggedTouchpoint], store: ViewStore, cache: ViewCache, *, clock: int | None = None,
               lifecycle: LifecycleConfig | None = LIFECYCLE_DEFAULT, tick_limit: int = 10_000,
               currency: str | None = "EUR", engine: ContactEngine | None = None,
               segments: SegmentSet | None = None, segment_memo: Memo | None = None) -> ViewChanges:
    """Fold a batch of log records into the changes to commit (no writes, no metrics here:
    a failed commit is retried, and must not count twice). ``clock``: the latest clock
    tick folded before the batch."""
    changes = ViewChanges(position=records[-1].position, clock=clock)
    decoded: list[tuple[LoggedTouchpoint, Touchpoint | Tick]] = []
    for record in records:
        try:
            decoded.append((record, _decode(record)))
        except Exception as error:  # noqa: BLE001 - any decoding failure is a dead letter
            changes.dead_letters.append(_dead(record, f"undecodable: {type(error).__name__}: {error}"))
    events = [(r, e) for r, e in decoded if not isinstance(e, Tick)]
    known = store.owners(i for _, e in events for i in identifiers_of(e.customer))
    looked_up = _likely_customers(events, known)
    views = cache.load(looked_up)
    ledger = BatchLedger()
    for record, event in decoded:
        if isinstance(event, Tick):
            changes.clock = event.at if changes.clock is None else max(changes.clock, event.at)
            if lifecycle is not None or engine is not None:
                changes.visited += _tick(event, store, cache, views, ledger, lifecycle, tick_limit, engine)
            continue
        try:  # resolution and fold succeed together, or the record is a dead letter
            res = resolve(event, known)
            if res.customer_id not in looked_up and not res.created:  # a new customer has no stored view
                looked_up.add(res.customer_id)
                views.update(cache.load({res.customer_id}))
            before = views.get(res.customer_id)
            view = fold_event(before or initial_view(res.customer_id), res.folded, lifecycle, changes.clock, engine,
                              ledger)
        except Exception as error:  # noqa: BLE001 - a bad record must not stop the runner
            changes.dead_letters.append(_dead(record, f"unfoldable: {type(error).__name__}: {error}"))
            continue
        ledger.record(before, view)
        views[res.customer_id] = view
        for identifier in res.links:  # only a folded event may claim identifiers
            known[identifier] = res.customer_id
            changes.links.append((*identifier, res.customer_id))
        if res.conflicts:
            detail = [{"kind": i[0], "owner": owner} for i, owner in res.conflicts]
            changes.conflicts.append((record.position, event.event_id, res.customer_id, orjson.dumps(detail)))
        changes.timeline.append((res.customer_id, format_instant(event.occurred_at), record.position))
    touched = {cid for cid, _, _ in changes.timeline} | {cid for cid in ledger.deadlines(views)}
    changes.views = {cid: dumps(to_state(views[cid])) for cid in touched}
    changes.transitions = ledger.transitions
    changes.stages = ledger.stage_changes(views)
    changes.deadlines = ledger.deadlines(views)
    if currency is not None:  # None: the portfolio's RFM cells are not kept (benchmark baseline)
        changes.rfm = ledger.rfm_changes(views, currency)
    changes.triggers, changes.outcomes, changes.figures = ledger.triggers, ledger.outcomes, ledger.figures
    if segments is not None:  # None: segments are not kept (benchmark baseline)
        changes.segments = ledger.segment_changes(views, segments, segment_memo)
    return changes


def _tick(event: Tick, store: ViewStore, cache: ViewCache, views: dict, ledger: BatchLedger,  # type: ignore[type-arg]
          lifecycle: LifecycleConfig, limit: int, engine: ContactEngine | None = None) -> int:
    """Move every customer whose deadline has passed on to the tick's instant; cost grows
    with the customers due, not with all customers (the deadline index)."""
    stored = store.due(event.at, limit + len(views))
    visiting = due(event.at, stored, views, limit)
    missing = {cid for cid in visiting if cid not in views}
    if missing:
        views.update(cache.load(missing))
    for cid in visiting:
        view = views.get(cid)
        if view is None:
            continue  # an index entry without a view cannot happen: both commit together
        try:
            after = fold_tick(view, event.at, event.tick_id, lifecycle, engine, ledger)
        except Exception as error:  # noqa: BLE001 - one customer must not stop the runner: left due
            log.error("tick_failed", error=type(error).__name__)
            continue
        if after is not view:
            ledger.record(view, after)
            views[cid] = after
    return len(visiting)


def _likely_customers(decoded: list[tuple[LoggedTouchpoint, Touchpoint]], known: dict) -> set[str]:  # type: ignore[type-arg]
    """The customers the batch will touch, for one batched load: each event's named
    customer, else the owner of its most trusted known identifier. Cheap on purpose (no
    resolution); the fold loop loads any other existing customer on its own."""
    customers: set[str] = set()
    for _, event in decoded:
        named = event.customer.customer_id
        owner = named or next((known[i] for i in identifiers_of(event.customer) if i in known), None)
        if owner:
            customers.add(owner)
    return customers


def _dead(record: LoggedTouchpoint, reason: str) -> tuple[int, str | None, str, bytes]:
    event_id: str | None = None
    try:
        event_id = orjson.loads(record.state).get("event_id")
    except Exception:  # noqa: BLE001
        pass
    return (record.position, event_id, reason[:500], record.state)


def _age_seconds(record: LoggedTouchpoint) -> float:
    """Seconds since the record was received (0 for a record without a readable received_at)."""
    try:
        return max(0.0, time.time() - instant(orjson.loads(record.state)["received_at"]).timestamp())
    except Exception:  # noqa: BLE001 - a dead letter has no age worth reporting
        return 0.0


def _count(changes: ViewChanges) -> None:
    """Metrics and log lines for what a batch committed (never for a batch that failed)."""
    for position, _, reason, _ in changes.dead_letters:
        kind = reason.split(":", 1)[0]
        metrics.child(metrics.DEAD_LETTERS, kind).inc()
        log.warning("dead_letter", position=position, reason=kind)
    if changes.conflicts:
        metrics.IDENTITY_CONFLICTS.inc(len(changes.conflicts))
    metrics.VIEWS_WRITTEN.inc(len(changes.views))
    for _, t in changes.transitions:
        metrics.child(metrics.LIFECYCLE_TRANSITIONS, t.from_stage, t.to_stage).inc()
    count_contact_figures(changes.figures)
    if changes.visited:
        metrics.LIFECYCLE_TICK_DUE.inc(changes.visited)


class ProjectionRunner:
    """A thread that keeps the view store up to date with the log."""

    def __init__(self, log_: TouchpointLog, store: ViewStore, *, batch: int = 2000, cache: int = 50_000,
                 until: int | None = None, linger: float = 0.005,
                 lifecycle: LifecycleConfig | None = LIFECYCLE_DEFAULT, tick_limit: int = 10_000,
                 currency: str | None = "EUR", engine: ContactEngine | None = None,
                 segments: SegmentSet | None = None):
        self.log, self.store, self.batch, self.until = log_, store, batch, until
        self.engine = engine
        self.lifecycle, self.tick_limit, self.currency = lifecycle, tick_limit, currency
        self.segments = segments
        self.segment_memo: Memo = {}  # segment answers of recently folded views (projections.segments)
        self.clock = store.clock()
        self.linger = linger
        self.cache = ViewCache(store, cache)
        self.position = store.position()
        self._changed = threading.Condition()
        self._appended = 0  # commits announced by the writer; read under the lock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_batch: Callable[[int, int], Any] | None = None
        self.failed: BaseException | None = None

    def notify(self) -> None:
        """Called by the writer after a commit: there is something new to read."""
        with self._changed:
            self._appended += 1
            self._changed.notify_all()

    def run_once(self) -> int:
        limit = self.batch if self.until is None else min(self.batch, self.until - self.position)
        records = self.log.read(self.position, limit) if limit > 0 else []
        if not records:
            return 0
        started = time.perf_counter()
        changes = fold_batch(records, self.store, self.cache, clock=self.clock, lifecycle=self.lifecycle,
                             tick_limit=self.tick_limit, currency=self.currency, engine=self.engine,
                             segments=self.segments, segment_memo=self._memo())
        self.store.commit(changes)
        self.cache.keep(changes.views)
        self.clock = changes.clock
        _count(changes)
        with self._changed:
            self.position = changes.position
            self._changed.notify_all()
        metrics.PROJECTION_BATCH_SECONDS.observe(time.perf_counter() - started)
        metrics.VIEW_LATENCY_SECONDS.observe(_age_seconds(records[0]))  # the batch's oldest: its worst case
        metrics.PROJECTED_EVENTS.inc(len(records))
        metrics.PROJECTION_POSITION.set(self.position)
        return len(records)

    def _memo(self) -> Memo:
        if len(self.segment_memo) > self.cache.capacity:  # bounded like the view cache
            self.segment_memo.clear()
        return self.segment_memo

    def catch_up(self) -> None:
        while self.run_once():
            pass

    def _loop(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            try:
                with self._changed:
                    seen = self._appended  # taken before reading: a commit after this wakes us
                folded = self.run_once()
                if folded:
                    backoff = 0.05
                    if folded < self.batch // 4:
                        # Trickling in: let a few milliseconds of events gather so the
                        # fixed cost of a batch (queries, commit) is shared.
                        self._stop.wait(self.linger)
                    continue
                with self._changed:
                    if self._appended == seen:
                        self._changed.wait(0.2)
            except Exception as error:  # noqa: BLE001 - storage trouble: wait and retry
                self.failed = error
                log.error("projection_batch_failed", error=type(error).__name__, detail=str(error)[:200])
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)
            else:
                self.failed = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="projection-runner", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.notify()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait_for(self, position: int, timeout: float) -> bool:
        """Block until the views include ``position`` (read-your-writes); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.position < position:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True
