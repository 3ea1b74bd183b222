"""The worker's adapter around the core's batch decider, for one partition's batch: pure, no I/O.

``decode`` turns Kafka records into the core's records (a touchpoint with the identity
ingest decided, a clock tick, or a rejected record with its reason); the caller loads
the stored states of the customers they name and of those the batch's ticks may visit
(one MGET for the whole poll) and the deadline index for each tick; ``fold`` calls
``projections.batch.fold_batch`` — the same function as the embedded runner, the replays
and the backtest — and turns its result into what the fenced commit writes and what is
published: states, documents, links, conflicts, timeline entries, dead letters and
derived events.

A record whose event a view already holds (a producer retry, a re-sent event) changes
nothing: it writes no timeline entry and no derived event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from projections.batch import BatchResult, FoldConfig, Rejected, Tick, Touch, fold_batch
from projections.batch import Record as CoreRecord
from projections.nbc.document import trigger_document
from projections.view.document import to_document, to_state, transition_document
from projections.view.fold import CustomerView, micros
from services.contracts import encode_record
from services.scaleout.kafka.records import BadRecord, ReadTick, ce_time, read_record
from services.scaleout.redis.keys import conflict_record, dead_letter_record
from services.scaleout.redis.views import LifecycleWrites
from services.scaleout.worker.segment_fold import segment_writes

__all__ = ["Record", "Decoded", "Folded", "decode", "fold", "due_fetch_size", "derived_id", "view_event_headers",
           "transition_headers", "trigger_headers", "trigger_record"]

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
    """A partition batch as the core reads it, and the raw records by offset."""

    records: list[CoreRecord] = field(default_factory=list)
    raw: dict[int, Record] = field(default_factory=dict)

    @property
    def customers(self) -> set[str]:
        return {r.customer_id for r in self.records if isinstance(r, Touch) and r.customer_id is not None}

    @property
    def ticks(self) -> list[Tick]:
        return [r for r in self.records if isinstance(r, Tick)]


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
    transitions: list[tuple[str, str, int, bytes]] = field(default_factory=list)  # (customer, id, at µs, Avro) to publish
    stage_moves: list[tuple[str, str]] = field(default_factory=list)  # (from, to) of each transition, for metrics
    triggers: list[tuple[str, str, str, int, bytes]] = field(default_factory=list)  # (channel, customer, id, at µs, Avro)
    visited: int = 0  # customers the batch's ticks re-evaluated
    tick_failures: int = 0  # customers a tick could not move (their state did not load): left due
    segment_events: list[tuple[str, str, int | None, bytes]] = field(default_factory=list)  # (customer, change id, at µs, Avro)


def decode(records: Sequence[Record], partitions: int | None = None) -> Decoded:
    """``partitions``: the topic's partition count, to refuse misrouted records."""
    out = Decoded()
    for record in records:
        out.raw[record.offset] = record
        try:
            read = read_record(record.value, record.key, record.headers, partition=record.partition,
                               partitions=partitions)
        except BadRecord as error:
            out.records.append(Rejected(record.offset, f"{error.kind}: {error}"))
            continue
        if isinstance(read, ReadTick):
            out.records.append(Tick(record.offset, read.tick_id, read.at))
        else:
            out.records.append(Touch(record.offset, read.event, read.customer_id, read.conflicts))
    return out


def fold(topic: str, partition: int, decoded: Decoded, states: Mapping[str, CustomerView | None],
         config: FoldConfig, *, base: int | None = None, clock: int | None = None,
         due_stored: Mapping[str, Sequence[tuple[str, int]]] | None = None) -> Folded:
    """Fold a decoded partition batch with ``fold_batch``. ``states``: the stored states
    of the customers it names and of those its ticks may visit (decoded on read);
    ``clock``: the partition's latest tick before the batch; ``due_stored``: per tick id,
    the partition's stored deadlines at or before the tick (``RedisViewStore.due``)."""
    result = fold_batch(states, decoded.records, config, clock=clock, due_stored=due_stored)
    return folded(topic, partition, decoded, result, config, base)


def folded(topic: str, partition: int, decoded: Decoded, result: BatchResult, config: FoldConfig,
           base: int | None) -> Folded:
    """What the commit writes and the worker publishes for a folded batch."""
    last = decoded.records[-1].key if decoded.records else -1
    out = Folded(topic, partition, last, base, views=result.views, view_offsets=result.changed_at,
                 received=result.received, folded=len(result.timeline), duplicates=result.duplicates,
                 visited=result.visited, tick_failures=len(result.tick_failures), links=result.links)
    out.lifecycle.clock = result.clock
    for c in result.conflicts:
        out.conflicts.append(conflict_record(topic, partition, c.key, c.event_id, c.customer_id, c.identifiers))
    for row in result.timeline:  # the record's own bytes: the API decodes them when a timeline is read
        out.timeline.append((row.customer_id, micros(row.event.occurred_at), row.event.event_id,
                             decoded.raw[row.key].value or b""))
    for dead in result.dead_letters:
        record = decoded.raw[dead.key]
        event_id = _event_id(record)
        out.dead_letters.append(dead_letter_record(topic, partition, record.offset, event_id, dead.reason[:500]))
        out.dead_records.append(_dead_record(record, event_id, dead.reason))
    for customer_id, view in result.views.items():
        out.states[customer_id] = orjson.dumps(to_state(view))
        out.documents[customer_id] = orjson.dumps(to_document(view))
    for customer_id, transition, dwell_us in result.transitions:
        document = transition_document(customer_id, transition, dwell_us)
        out.lifecycle.transitions.append(orjson.dumps(document))
        out.transitions.append((customer_id, document["transition_id"], transition.at,
                                encode_record("lifecycle/stage_changed", document)))
        out.stage_moves.append((transition.from_stage, transition.to_stage))
    out.lifecycle.stages, out.lifecycle.deadlines, out.lifecycle.rfm = result.stages, result.deadlines, result.rfm
    for fired in result.triggers:
        document = trigger_document(fired)
        out.lifecycle.triggers.append((fired.channel, orjson.dumps(document)))
        out.triggers.append((fired.channel, fired.customer_id, fired.trigger_id, fired.at,
                             encode_record("nbc/trigger", trigger_record(document))))
    out.lifecycle.figures = result.figures
    if config.segments is not None:
        out.lifecycle.segments, out.segment_events = segment_writes(result.segments, topic, partition,
                                                                    result.changed_at)
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


def view_event_headers(customer_id: str, topic: str, partition: int, offset: int,
                       at: int | None) -> list[tuple[str, bytes]]:
    """CloudEvents headers of a customer-view change: the id names the customer and the
    offset of the record that last changed the view in this batch; the time is the
    platform's when it changed (its latest event, or the tick that moved it)."""
    return [*_VIEW_STATIC, ("ce_id", f"customer-view/{customer_id}/{topic}/{partition}/{offset}".encode()),
            ("ce_source", b"touchstream/view-worker"), *ce_time(at)]


_TRANSITION_STATIC = [("ce_specversion", b"1.0"), ("ce_type", b"touchstream.lifecycle.stage_changed"),
                      ("ce_source", b"touchstream/view-worker"), ("content-type", b"application/avro")]


_TRIGGER_STATIC = [("ce_specversion", b"1.0"), ("ce_type", b"touchstream.nbc.trigger"),
                   ("ce_source", b"touchstream/view-worker"), ("content-type", b"application/avro")]


def trigger_headers(trigger_id: str, at: int) -> list[tuple[str, bytes]]:
    """CloudEvents headers of a trigger: ce_id is its deterministic id (consumers dedupe on
    it), ce_time the instant it is actionable from."""
    return [*_TRIGGER_STATIC, ("ce_id", trigger_id.encode()), *ce_time(at)]


def transition_headers(transition_id: str, at: int) -> list[tuple[str, bytes]]:
    """CloudEvents headers of a lifecycle transition: ce_id is its deterministic id, so a
    batch published again after a crash carries the same ids (consumers dedupe on it);
    ce_time the instant of the move."""
    return [*_TRANSITION_STATIC, ("ce_id", transition_id.encode()), *ce_time(at)]
