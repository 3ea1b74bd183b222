"""Folding one partition's batch of touchpoint records: pure, no I/O.

``decode`` turns records into touchpoints with their identity decision, or dead letters
with reasons; the caller loads the stored states of the customers they name (one MGET
for the whole poll); ``fold`` applies the SAME core as the embedded runtime
(``projections.identity.settled`` + ``projections.view.evolve``) and returns everything
the batch changes: states, published documents, identifier links, conflicts, timeline
entries, dead letters and derived events, to be written in one fenced commit.

A record whose event id a view already holds (a producer retry, a re-sent event, a batch
re-read after a crash) changes nothing: ``evolve`` is idempotent, and a record that
changed nothing writes no timeline entry and no derived event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from projections.identity import settled
from projections.lifecycle import DEFAULT as LIFECYCLE_DEFAULT
from projections.lifecycle import LifecycleConfig
from projections.nbc_document import trigger_document
from projections.nbc_engine import ContactEngine, fold_event, fold_tick
from projections.segments import SegmentSet
from projections.view import CustomerView, initial_view, micros
from projections.view_document import from_state, to_document, to_state, transition_document
from services.contracts import encode_record
from services.kafka.records import BadRecord, ReadTick, ReadTouchpoint, read_record
from services.batch_ledger import BatchLedger, due
from services.redis_keys import conflict_record, dead_letter_record
from services.redis_views import LifecycleWrites
from services.worker.segment_fold import segment_writes

__all__ = ["Record", "Decoded", "Folded", "decode", "fold", "due_fetch_size", "derived_id", "view_event_headers", "transition_headers",
           "trigger_headers", "trigger_record"]

REASON_HEADER = "touchstream-dead-letter-reason"


class Record(Protocol):
    """What the worker reads of a Kafka record (aiokafka's ConsumerRecord has it)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


@dataclass(slots=True)
class Decoded:
    records: list[tuple[Record, ReadTouchpoint | ReadTick]] = field(default_factory=list)
    dead: list[tuple[Record, str]] = field(default_factory=list)  # (record, reason)

    @property
    def customers(self) -> set[str]:
        return {r.customer_id for _, r in self.records if isinstance(r, ReadTouchpoint)}

    @property
    def ticks(self) -> list[ReadTick]:
        return [r for _, r in self.records if isinstance(r, ReadTick)]


@dataclass(slots=True)
class Folded:
    topic: str
    partition: int
    offset: int  # the last offset of the batch: the partition's position once committed
    base: int | None = None  # the partition's position the batch was folded on top of
    states: dict[str, bytes] = field(default_factory=dict)
    documents: dict[str, bytes] = field(default_factory=dict)
    links: list[tuple[str, str, str]] = field(default_factory=list)
    conflicts: list[bytes] = field(default_factory=list)
    dead_letters: list[bytes] = field(default_factory=list)  # Redis stream entries
    dead_records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = field(default_factory=list)
    timeline: list[tuple[str, int, str, bytes]] = field(default_factory=list)
    views: dict[str, CustomerView] = field(default_factory=dict)  # the touched views, folded
    view_offsets: dict[str, int] = field(default_factory=dict)  # customer -> offset of its last change
    received: list[int] = field(default_factory=list)  # received_at (µs) of each folded touchpoint
    folded: int = 0
    duplicates: int = 0
    lifecycle: LifecycleWrites = field(default_factory=LifecycleWrites)
    transitions: list[tuple[str, str, bytes]] = field(default_factory=list)  # (customer, id, Avro) to publish
    stage_moves: list[tuple[str, str]] = field(default_factory=list)  # (from, to) of each transition, for metrics
    triggers: list[tuple[str, str, str, bytes]] = field(default_factory=list)  # (channel, customer, id, Avro) to publish
    visited: int = 0  # customers the batch's ticks re-evaluated
    tick_failures: int = 0  # customers a tick could not move (their state did not load): left due
    segment_events: list[tuple[str, str, bytes]] = field(default_factory=list)  # (customer, change id, Avro)


def decode(records: Sequence[Record], partitions: int | None = None) -> Decoded:
    """``partitions``: the topic's partition count, to refuse misrouted records."""
    out = Decoded()
    for record in records:
        try:
            out.records.append((record, read_record(record.value, record.key, record.headers,
                                                     partition=record.partition, partitions=partitions)))
        except BadRecord as error:
            out.dead.append((record, f"{error.kind}: {error}"))
    return out


def fold(topic: str, partition: int, offset: int, decoded: Decoded, stored: Mapping[str, bytes],
         views: dict[str, CustomerView] | None = None, *, base: int | None = None,
         clock: int | None = None, due_stored: Mapping[tuple[int, str], list[tuple[str, int]]] | None = None,
         lifecycle: LifecycleConfig | None = LIFECYCLE_DEFAULT, tick_limit: int = 10_000,
         currency: str = "EUR", engine: ContactEngine | None = None,
         segments: SegmentSet | None = None) -> Folded:
    """Fold a decoded batch. ``stored`` holds the stored states (bytes) of the customers it
    names and of those its ticks may visit; ``views`` may hold views already folded
    earlier in the same poll (and is updated). ``clock``: the partition's latest tick
    before the batch; ``due_stored``: per tick id, the partition's stored deadlines at
    or before the tick (``RedisViewStore.due``, ``tick_limit`` + batch size of them)."""
    out = Folded(topic, partition, offset, base)
    out.lifecycle.clock = clock
    views = {} if views is None else views
    ledger = BatchLedger()

    def load(customer_id: str) -> CustomerView | None:
        view = views.get(customer_id)
        if view is None:
            raw = stored.get(customer_id)
            view = from_state(orjson.loads(raw)) if raw is not None else None
        return view

    for record, read in decoded.records:
        if isinstance(read, ReadTick):
            now = out.lifecycle.clock
            out.lifecycle.clock = read.at if now is None else max(now, read.at)
            if lifecycle is not None or engine is not None:
                stored_due = (due_stored or {}).get((partition, read.tick_id), ())
                visiting = due(read.at, stored_due, out.views, tick_limit)
                out.visited += len(visiting)
                for customer_id in visiting:
                    try:
                        view = load(customer_id)
                        after = view if view is None else fold_tick(view, read.at, read.tick_id, lifecycle, engine,
                                                                    ledger)
                    except Exception:  # noqa: BLE001 - one unreadable state must not stall the partition
                        out.tick_failures += 1
                        continue
                    if view is not None and after is not view:
                        ledger.record(view, after)
                        views[customer_id] = out.views[customer_id] = after
                        out.view_offsets[customer_id] = record.offset
            continue
        customer_id, event = read.customer_id, read.event
        try:
            view = load(customer_id)
            resolution = settled(event, customer_id, read.conflicts)
            after = fold_event(view or initial_view(customer_id), resolution.folded, lifecycle, out.lifecycle.clock,
                               engine, ledger)
        except Exception as error:  # noqa: BLE001 - a record that cannot be folded is a dead letter
            decoded.dead.append((record, f"unfoldable: {type(error).__name__}: {error}"))
            continue
        if after is view:
            out.duplicates += 1
            continue
        ledger.record(view, after)
        views[customer_id] = out.views[customer_id] = after
        out.view_offsets[customer_id] = record.offset
        out.folded += 1
        out.received.append(micros(event.received_at))
        out.links += [(kind, value, customer_id) for kind, value in resolution.links]
        if resolution.conflicts:
            out.conflicts.append(conflict_record(topic, partition, record.offset, event.event_id, customer_id,
                                                 resolution.conflicts))
        # the record's own bytes: the API decodes them when a timeline is read
        out.timeline.append((customer_id, micros(event.occurred_at), event.event_id, record.value or b""))
    for record, reason in decoded.dead:
        event_id = _event_id(record)
        out.dead_letters.append(dead_letter_record(topic, partition, record.offset, event_id, reason[:500]))
        out.dead_records.append(_dead_record(record, event_id, reason))
    for customer_id, view in out.views.items():
        out.states[customer_id] = orjson.dumps(to_state(view))
        out.documents[customer_id] = orjson.dumps(to_document(view))
    for customer_id, transition in ledger.transitions:
        document = transition_document(customer_id, transition)
        out.lifecycle.transitions.append(orjson.dumps(document))
        out.transitions.append((customer_id, document["transition_id"],
                                encode_record("lifecycle/stage_changed", document)))
        out.stage_moves.append((transition.from_stage, transition.to_stage))
    out.lifecycle.stages = ledger.stage_changes(out.views)
    out.lifecycle.deadlines = ledger.deadlines(out.views)
    out.lifecycle.rfm = ledger.rfm_changes(out.views, currency)
    for fired in ledger.triggers:
        document = trigger_document(fired)
        out.lifecycle.triggers.append((fired.channel, orjson.dumps(document)))
        out.triggers.append((fired.channel, fired.customer_id, fired.trigger_id,
                             encode_record("nbc/trigger", trigger_record(document))))
    out.lifecycle.figures = ledger.figures
    if segments is not None:
        out.lifecycle.segments, out.segment_events = segment_writes(ledger.segment_changes(out.views, segments), topic,
                                                                    partition, out.view_offsets)
    return out


def trigger_record(document: dict[str, Any]) -> dict[str, Any]:
    """The Avro record (schemas/nbc/trigger) of a trigger document: flat, the explanation as JSON."""
    rule, cause = document["rule"], document["cause"]
    head = {k: document[k] for k in ("trigger_id", "customer_id", "channel", "action", "script", "offer")}
    tail = {k: document[k] for k in ("priority", "expected_value", "score", "at", "valid_until", "decided_at")}
    return {**head, "rule_id": rule["id"], "rule_version": rule["version"], "purpose": rule["purpose"], **tail,
            "cause_kind": cause["kind"], "cause_id": str(cause.get("id", "")),
            "explanation": orjson.dumps(document["explanation"]).decode()}


def due_fetch_size(ticks: int, records: int, tick_limit: int) -> int:
    """How many stored deadlines to fetch for each tick of a partition batch: each tick
    visits at most ``tick_limit`` customers, and the batch's events and earlier ticks
    change at most that many more index entries than a tick will read."""
    return tick_limit * ticks + records


def derived_id(topic: str, partition: int, offset: int, kind: str) -> str:
    """A deterministic id for an event derived from the record at (topic, partition,
    offset): a re-fold after a crash publishes it again under the same id. Plain text
    rather than a uuid5: it is computed for every changed view, and hashing cost more
    than folding the event."""
    return f"{kind}/{topic}/{partition}/{offset}"


def _event_id(record: Record) -> str | None:
    for key, value in record.headers:
        if key == "ce_id" and value is not None:  # Kafka allows a header without a value
            return value.decode("utf-8", "replace")
    return None


def _dead_record(record: Record, event_id: str | None, reason: str) -> tuple[bytes | None, bytes | None,
                                                                             list[tuple[str, bytes]]]:
    """The dead-letter topic's record: the original bytes and headers, the reason and the
    source in headers, a deterministic id."""
    headers = [(k, v) for k, v in record.headers if k != "ce_id"]
    headers += [
        ("ce_id", derived_id(record.topic, record.partition, record.offset, "dead-letter").encode()),
        (REASON_HEADER, reason[:1000].encode("utf-8", "replace")),
        ("touchstream-source-topic", record.topic.encode()),
        ("touchstream-source-partition", str(record.partition).encode()),
        ("touchstream-source-offset", str(record.offset).encode()),
    ]
    if event_id:
        headers.append(("touchstream-event-id", event_id.encode("utf-8", "replace")))
    return (event_id.encode("utf-8", "replace") if event_id else record.key), record.value, headers


_VIEW_STATIC = [("ce_specversion", b"1.0"), ("ce_type", b"touchstream.customer_view.changed"),
                ("content-type", b"application/json")]


def view_event_headers(customer_id: str, topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    """CloudEvents headers of a customer-view change: the id names the customer and the
    offset of the record that last changed the view in this batch."""
    return [*_VIEW_STATIC, ("ce_id", f"customer-view/{customer_id}/{topic}/{partition}/{offset}".encode()),
            ("ce_source", b"touchstream/view-worker")]


_TRANSITION_STATIC = [("ce_specversion", b"1.0"), ("ce_type", b"touchstream.lifecycle.stage_changed"),
                      ("ce_source", b"touchstream/view-worker"), ("content-type", b"application/avro")]


_TRIGGER_STATIC = [("ce_specversion", b"1.0"), ("ce_type", b"touchstream.nbc.trigger"),
                   ("ce_source", b"touchstream/view-worker"), ("content-type", b"application/avro")]


def trigger_headers(trigger_id: str) -> list[tuple[str, bytes]]:
    """CloudEvents headers of a trigger: ce_id is its deterministic id (consumers dedupe on it)."""
    return [*_TRIGGER_STATIC, ("ce_id", trigger_id.encode())]


def transition_headers(transition_id: str) -> list[tuple[str, bytes]]:
    """CloudEvents headers of a lifecycle transition: ce_id is its deterministic id, so a
    batch published again after a crash carries the same ids (consumers dedupe on it)."""
    return [*_TRANSITION_STATIC, ("ce_id", transition_id.encode())]
