"""The projection runner: follows the log and folds it into the view store, in batches.

Each batch: read up to N log records after the tracked position, decode them, load the
states they may touch, fold them with the core's one batch decider
(``projections.batch.fold_batch``: identities, views, stages, next best contact,
segments), then commit views, identity links, timeline rows, conflicts, dead letters,
everything decided *and* the tracking position in one SQLite transaction.

Business rule: a record that cannot be decoded or folded is never dropped and never
stops the runner: it goes to ``dead_letters`` with the reason, and the position moves on.
Per-event I/O is what would limit throughput, so reads and writes are per batch, and
recently folded states are kept in a cache bounded in bytes (the runner is the only writer).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog

from projections.batch import BatchResult, Conflict, FoldConfig, Record, Rejected, Tick, Touch, fold_batch, regroup
from projections.codec import format_instant, from_dict, instant
from projections.identity import identifiers_of
from projections.merge import Merge, MergeRefused, Merges
from projections.merge_policy import Claim, MergePolicy, decide
from projections.segments.membership import Memo
from projections.view.document import to_state
from projections.view.fold import micros
from services import metrics
from services.embedded.eventlog import IDENTITY_TOPIC, LoggedTouchpoint, TouchpointLog, merge_document
from services.embedded.storage.contacts import dumps
from services.embedded.storage.unit import ViewChanges, ViewStore
from services.nbc.figures import count_contact_figures
from services.view_cache import States, ViewCache

__all__ = ["ProjectionRunner", "fold_records", "merge_changes", "policy_outbox"]

log = structlog.get_logger("touchstream.runner")

MEMO_LIMIT = 100_000  # segment answers kept between batches (a few hundred bytes each)


def _decode(record: LoggedTouchpoint) -> Record:
    try:
        document = record.document()
        if record.topic.startswith("clock/"):
            return Tick(record.position, document["event_id"], micros(instant(document["at"])))
        return Touch(record.position, from_dict(document))
    except Exception as error:  # noqa: BLE001 - any decoding failure is a dead letter
        return Rejected(record.position, f"undecodable: {type(error).__name__}: {error}")


def fold_records(records: list[LoggedTouchpoint], store: ViewStore, cache: ViewCache, config: FoldConfig, *,
                 clock: int | None = None, memo: Memo | None = None, merges: Merges | None = None,
                 policy: MergePolicy | None = None, decided: Merges | None = None,
                 policy_after: int = 0) -> ViewChanges:
    """The embedded adapter around ``projections.batch.fold_batch``: decode the log
    records, load what the batch may touch (the owners of its identifiers, the customers
    it names, the customers its ticks may visit), fold, and turn the result into the
    changes to commit (no writes, no metrics here: a failed commit is retried, and must
    not count twice). ``clock``: the latest clock tick folded before the batch.
    ``merges``: the merges in force (the batch holds none: ``merge_changes`` folds those).
    ``policy``: the automatic merge policy; the merges it decides on the batch's conflicts
    (those at positions beyond ``policy_after``) go to the outbox, committed with the batch
    and appended to the log after it. ``decided``: the merges in force plus those the
    policy decided and the views have not folded yet (what it decides against)."""
    decoded = [_decode(record) for record in records]
    touches = [d for d in decoded if isinstance(d, Touch)]
    owners = store.identity.owners({i for t in touches for i in identifiers_of(t.event.customer)})
    roots = merges.roots() if merges is not None else {}
    customers = set(owners.values()) | {c for t in touches if (c := t.event.customer.customer_id)}
    customers = {roots.get(c, c) for c in customers}  # an event is folded onto its natural customer's root
    due_stored = {t.tick_id: store.lifecycle.due(t.at, config.tick_limit + len(records))
                  for t in decoded if isinstance(t, Tick)}
    customers.update(c for entries in due_stored.values() for c, _ in entries)
    result = fold_batch(States(cache.states(customers)), decoded, config, clock=clock, owners=owners,
                        due_stored=due_stored, memo=memo, roots=roots)
    changes = _changes(result, records)
    changes.ticks = [(t.key, t.tick_id, t.at) for t in decoded if isinstance(t, Tick)]
    conflicts = [c for c in result.conflicts if c.key > policy_after]
    if policy is not None and policy.active and conflicts:
        changes.outbox = policy_outbox(policy, conflicts, decided or merges or Merges())
    return changes


def policy_outbox(policy: MergePolicy, conflicts: list[Conflict], merges: Merges) -> list[tuple[str, bytes]]:
    """The merge documents the policy decides on a batch's conflicts, in conflict order."""
    outbox: list[tuple[str, bytes]] = []
    now = datetime.now(UTC)
    for conflict in conflicts:
        claims = tuple(Claim(identifier[0], owner) for identifier, owner in conflict.identifiers)
        decided, merges = decide(policy, conflict.event_id, conflict.customer_id, claims, merges)
        for d in decided:
            evidence = {"event_id": d.event_id, "conflict_position": conflict.key, "rule": d.rule,
                        "identifiers": list(d.kinds)}
            document = merge_document(d.merge_id, d.survivor, d.absorbed, d.reason, d.merge().actor, now,
                                      cause="policy", evidence=evidence)
            outbox.append((document["event_id"], orjson.dumps(document)))
    return outbox


def merge_changes(record: LoggedTouchpoint, store: ViewStore, log_: TouchpointLog, cache: ViewCache,
                  config: FoldConfig, merges: Merges) -> tuple[ViewChanges, Merges]:
    """A merge or an undone merge read from the log: the merges in force after it, and
    what to commit — the customers it concerns refolded from their own events (each
    event's natural customer, ``projections.merge``) and every clock tick before it, the
    absorbed customers' views removed, the portfolio moved (``projections.batch.regroup``).
    Nothing is published again: the triggers and transitions the refold decides were
    decided when their events arrived. A merge the graph refuses (it raced another) is a
    dead letter with the reason."""
    changes = ViewChanges(position=record.position)
    try:
        d = record.document()
        if d["type"] == "customer_merged":
            merge = Merge(d["merge_id"], d["survivor"], d["absorbed"], d["reason"], d["actor"])
            after = merges.merge(merge)
            touched = merges.group(merges.root(merge.survivor)) | merges.group(merge.absorbed)
            evidence = d.get("evidence")
            changes.merges = [(*merge, record.position, d.get("cause", "operator"),
                               None if evidence is None else orjson.dumps(evidence), d["received_at"])]
        else:
            after, merge = merges.undo(d["merge_id"])
            touched = merges.group(merges.root(merge.survivor))
            changes.unmerges = [(merge.merge_id, record.position, d["reason"], d["actor"], d["received_at"])]
    except MergeRefused as refused:
        changes.dead_letters = [(record.position, d.get("event_id"), f"merge_refused: {refused.code}: {refused}",
                                 record.state)]
        return changes, merges
    except Exception as error:  # noqa: BLE001 - an unreadable merge is a dead letter, never a stopped runner
        changes.dead_letters = [(record.position, _event_id(record.state),
                                 f"undecodable: {type(error).__name__}: {error}"[:500], record.state)]
        return changes, merges
    group = sorted(touched)
    positions = store.customers.positions_of(group)
    touches = [t for i in range(0, len(positions), 10_000)  # SQLite binds at most 32,766 values a statement
               for t in (_decode(r) for r in log_.at_positions(positions[i:i + 10_000])) if isinstance(t, Touch)]
    ticks = [Tick(p, tick_id, at) for p, tick_id, at in store.lifecycle.ticks_before(record.position)]
    owners = store.identity.owners({i for t in touches for i in identifiers_of(t.event.customer)})
    roots = after.roots()
    refolded = fold_batch({}, sorted([*touches, *ticks], key=lambda r: r.key), config, owners=owners,
                          roots=roots).views
    before = States(cache.states(set(group)))
    result = regroup({c: (before.get(c), None if c in roots else refolded.get(c)) for c in group}, config)
    changes.views = {cid: dumps(to_state(view)) for cid, view in result.views.items()}
    changes.removed = result.removed
    changes.stages, changes.deadlines, changes.rfm, changes.segments = (result.stages, result.deadlines, result.rfm,
                                                                        result.segments)
    return changes, after


def _changes(result: BatchResult, records: list[LoggedTouchpoint]) -> ViewChanges:
    raw = {record.position: record.state for record in records}
    changes = ViewChanges(position=records[-1].position, clock=result.clock)
    changes.views = {cid: dumps(to_state(view)) for cid, view in result.views.items()}
    changes.links = result.links
    # kept per natural customer: a merge, or its undoing, never rewrites a timeline
    changes.timeline = [(row.natural, format_instant(row.event.occurred_at), row.key) for row in result.timeline]
    changes.conflicts = [(c.key, c.event_id, c.customer_id,
                          orjson.dumps([{"kind": i[0], "owner": owner} for i, owner in c.identifiers]))
                         for c in result.conflicts]
    changes.dead_letters = [(d.key, d.event_id or _event_id(raw[d.key]), d.reason[:500], raw[d.key])
                            for d in result.dead_letters]
    changes.visited = result.visited
    changes.tick_failures = len(result.tick_failures)
    changes.transitions, changes.stages, changes.deadlines = result.transitions, result.stages, result.deadlines
    changes.rfm, changes.segments = result.rfm, result.segments
    changes.triggers, changes.outcomes, changes.figures = result.triggers, result.outcomes, result.figures
    return changes


def _event_id(state: bytes) -> str | None:
    try:
        return orjson.loads(state).get("event_id")
    except Exception:  # noqa: BLE001 - an unreadable record has no id to report
        return None


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
    for _, t, _ in changes.transitions:
        metrics.child(metrics.LIFECYCLE_TRANSITIONS, t.from_stage, t.to_stage).inc()
    count_contact_figures(changes.figures)
    if changes.visited:
        metrics.LIFECYCLE_TICK_DUE.inc(changes.visited)
    if changes.tick_failures:
        metrics.TICK_FAILURES.inc(changes.tick_failures)
        log.error("tick_failed", customers=changes.tick_failures)


class ProjectionRunner:
    """A thread that keeps the view store up to date with the log."""

    def __init__(self, log_: TouchpointLog, store: ViewStore, config: FoldConfig | None = None, *,
                 batch: int = 2000, cache_bytes: int = 256 << 20, until: int | None = None, linger: float = 0.005,
                 policy: MergePolicy | None = None):
        """``policy``: the automatic merge policy (the live runner alone: a replay folds the
        merges it decided, from the log, and decides none). A view store started afresh
        over an existing log (a rebuild) takes no decision on the events already in the
        log: those it took are there, and a policy changed since must not rewrite them."""
        self.log, self.store, self.batch, self.until = log_, store, batch, until
        self.policy = policy if policy is not None and policy.active else None
        self.config = config or FoldConfig()
        self.segments = self.config.segments
        self.segment_memo: Memo = {}  # segment answers of recently folded views (projections.segments.membership)
        self.clock = store.clock()
        self.linger = linger
        self.cache = ViewCache(store, cache_bytes)
        self.position = store.position()
        self.merges = Merges.of(store.identity.merges_in_force())
        self.policy_after = log_.head() if self.policy is not None and self.position == 0 else 0
        self.unfolded: dict[str, Merge] = {}  # policy merges decided, not yet folded: merge id -> merge
        self._outbox_pending = False
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
        if self._outbox_pending:  # the log refused the last append: try again
            self._outbox_pending = not self.flush_outbox()
        limit = self.batch if self.until is None else min(self.batch, self.until - self.position)
        records = self.log.read(self.position, limit) if limit > 0 else []
        if not records:
            return 0
        started = time.perf_counter()
        # a merge is folded alone: the records before it make a batch of their own
        cut = next((i for i, r in enumerate(records) if r.topic.startswith(IDENTITY_TOPIC)), None)
        merges = self.merges
        if cut == 0:
            records = records[:1]
            changes, merges = merge_changes(records[0], self.store, self.log, self.cache, self.config, self.merges)
            changes.clock = self.clock
        else:
            records = records[:cut]
            changes = fold_records(records, self.store, self.cache, self.config, clock=self.clock, memo=self._memo(),
                                   merges=self.merges, policy=self.policy, decided=self._decided(),
                                   policy_after=self.policy_after)
        self.store.commit(changes)
        self.merges = merges
        self.cache.forget(changes.removed)
        self.cache.keep(changes.views)
        self.clock = changes.clock
        _count(changes)
        with self._changed:
            self.position = changes.position
            self._changed.notify_all()
        for merge_id, *_ in changes.merges:  # folded (or refused: a dead letter), no longer pending
            self.unfolded.pop(merge_id, None)
        for letter in changes.dead_letters:
            if cut == 0 and letter[1] and letter[1].startswith("merge/"):
                self.unfolded.pop(letter[1].removeprefix("merge/"), None)
        for _, document in changes.outbox:
            d = orjson.loads(document)
            self.unfolded[d["merge_id"]] = Merge(d["merge_id"], d["survivor"], d["absorbed"], d["reason"], d["actor"])
        if changes.outbox:
            self._outbox_pending = not self.flush_outbox()
        metrics.PROJECTION_BATCH_SECONDS.observe(time.perf_counter() - started)
        metrics.VIEW_LATENCY_SECONDS.observe(_age_seconds(records[0]))  # the batch's oldest: its worst case
        metrics.PROJECTED_EVENTS.inc(len(records))
        metrics.PROJECTION_POSITION.set(self.position)
        return len(records)

    def _decided(self) -> Merges:
        """The merges in force and those the policy decided that the views have not folded
        yet (in decision order; one an operator's merge made impossible meanwhile is left out)."""
        graph = self.merges
        for merge in self.unfolded.values():
            try:
                graph = graph.merge(merge)
            except MergeRefused:
                continue
        return graph

    def flush_outbox(self) -> bool:
        """Append the policy merges committed with earlier batches to the log (deduplicated
        there by their ids: a crash between the append and the clean-up appends nothing
        twice), then forget them; False when the log did not take them (they stay in the
        outbox, and the next batch tries again)."""
        try:
            pending = self.store.identity.outbox()
            if not pending:
                return True
            appended = self.log.append([orjson.loads(document) for _, document in pending])
            self.store.identity.appended(event_id for event_id, _ in pending)
        except Exception as error:  # noqa: BLE001 - the decisions are safe in the outbox: retried
            log.error("policy_merges_not_appended", error=type(error).__name__, detail=str(error)[:200])
            return False
        fresh = sum(1 for a in appended if not a.duplicate)
        metrics.POLICY_MERGES.inc(fresh)
        log.info("policy_merges_appended", merges=fresh)
        return True

    def _memo(self) -> Memo:
        if len(self.segment_memo) > MEMO_LIMIT:  # bounded: it only spares evaluations
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
        for _, document in self.store.identity.outbox():  # decided before a stop, not yet in the log
            d = orjson.loads(document)
            self.unfolded[d["merge_id"]] = Merge(d["merge_id"], d["survivor"], d["absorbed"], d["reason"], d["actor"])
        self.flush_outbox()  # whatever the setting now: a decision taken is appended
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
