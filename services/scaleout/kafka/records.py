"""The touchpoint record on Kafka: what ingest writes and what the view worker reads.

A record is

* key: the customer id decided at ingest (UTF-8), so one customer's events share a
  partition and keep their order;
* value: the touchpoint exactly as the sender gave it (canonical form), Avro
  single-object encoded (``services.contracts``): a reader finds the writer schema by its
  fingerprint;
* headers: CloudEvents binary mode (``ce_specversion, ce_id, ce_type, ce_source, ce_time,
  content-type``) and ``touchstream-resolution``, the identity decision taken at ingest:
  JSON ``{"customer_id": "...", "conflicts": [[i, "owner"], ...]}`` where ``i`` indexes the
  event's identifiers in ``projections.identity.identifiers_of`` order. Indexes and
  customer ids only: no identifier value ever leaves the payload.

Carrying the decision makes the worker a pure function of the topic: it needs no
identifier index to fold, and a replay of the topic gives the same views, links and
conflicts as the live run, whatever the order partitions are read in.

A record from another producer without the resolution header is folded for the
customer it names (``customer.customer_id``), else the record key; with neither it is
a dead letter. A record on a partition other than its customer's (``partition_of``: the
key's murmur2 hash, as every Kafka client's default partitioner) is a dead letter too:
one customer, one partition, one worker writing its view. So the touchpoints topic's
partition count is fixed once traffic flows (adding partitions moves customers: another
count is a new generation of the topic, ``services.scaleout.repartition``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson
from aiokafka.partitioner import murmur2

from projections.codec import format_instant, instant
from projections.identity import Identifier, identifiers_of
from projections.touchpoints import Touchpoint
from projections.view.state import instant_of, micros
from services.contracts import decode, decode_record, encode_record

__all__ = [
    "ce_time",
    "RESOLUTION_HEADER",
    "Headers",
    "BadRecord",
    "ReadTouchpoint",
    "ReadTick",
    "TICK_TYPE",
    "tick_record",
    "read_record",
    "cloudevents_headers",
    "resolution_header",
    "read_touchpoint",
    "partition_of",
]

RESOLUTION_HEADER = "touchstream-resolution"

Headers = list[tuple[str, bytes]]


class BadRecord(Exception):
    """A record the worker cannot fold; ``kind`` is the dead-letter reason's class
    (``undecodable``, ``unresolved``), the message says what exactly."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class ReadTouchpoint:
    event: Touchpoint
    customer_id: str
    conflicts: dict[Identifier, str]


@dataclass(frozen=True, slots=True)
class ReadTick:
    """A clock tick (schemas/clock/tick) for the partition it was read from."""

    tick_id: str
    at: int  # µs


TICK_TYPE = b"touchstream.clock.tick"


def tick_record(at: datetime, partition: int) -> tuple[str, bytes, Headers]:
    """(tick id, value, headers) of the clock tick for one partition: no key, the
    partition is chosen by the sender; the id is the partition and the instant."""
    moment = format_instant(at)
    tick_id = f"tick/{partition}/{moment}"
    value = encode_record("clock/tick", {"tick_id": tick_id, "at": moment, "partition": partition})
    headers = [("ce_specversion", b"1.0"), ("ce_id", tick_id.encode()), ("ce_type", TICK_TYPE),
               ("ce_source", b"touchstream/clock"), ("ce_time", moment.encode()),
               ("content-type", b"application/avro")]
    return tick_id, value, headers


def read_tick(value: bytes | None, partition: int | None = None) -> ReadTick:
    try:
        family, document = decode_record(value or b"")
        if family != "clock/tick":
            raise ValueError(f"a {family} record under the clock tick type")
        tick = ReadTick(document["tick_id"], micros(instant(document["at"])))
    except Exception as error:  # noqa: BLE001 - a bad tick is a dead letter like any bad record
        raise BadRecord("undecodable", f"{type(error).__name__}: {error}") from None
    meant = document.get("partition")
    if partition is not None and meant is not None and meant != partition:
        raise BadRecord("misrouted", f"a clock tick for partition {meant} on partition {partition}")
    return tick


def cloudevents_headers(document: Mapping[str, Any]) -> Headers:
    """CloudEvents Kafka binding, binary mode: attributes as ``ce_*`` headers, the data
    (Avro) as the value, its media type in ``content-type``."""
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", document["event_id"].encode("utf-8")),
        ("ce_type", f"touchstream.touchpoint.{document['type']}".encode()),
        ("ce_source", document["source"].encode("utf-8")),
        ("ce_time", document["occurred_at"].encode("utf-8")),
        ("content-type", b"application/avro"),
    ]


def resolution_header(event: Touchpoint, customer_id: str,
                      conflicts: Sequence[tuple[Identifier, str]]) -> tuple[str, bytes]:
    index = {identifier: i for i, identifier in enumerate(identifiers_of(event.customer))}
    pairs = [[index[identifier], owner] for identifier, owner in conflicts]
    return RESOLUTION_HEADER, orjson.dumps({"customer_id": customer_id, "conflicts": pairs})


@lru_cache(maxsize=1 << 16)
def partition_of(customer_id: str, partitions: int) -> int:
    """The partition a customer's records belong on: the producer's default partitioner
    (murmur2 of the key, as the Java client) over the topic's partitions."""
    return (murmur2(customer_id.encode("utf-8")) & 0x7FFFFFFF) % partitions


def read_record(value: bytes | None, key: bytes | None, headers: Sequence[tuple[str, bytes]], *,
                partition: int | None = None, partitions: int | None = None) -> ReadTouchpoint | ReadTick:
    """A touchpoint record, or a clock tick (told by its CloudEvents type)."""
    if any(k == "ce_type" and v == TICK_TYPE for k, v in headers):
        return read_tick(value, partition)
    return read_touchpoint(value, key, headers, partition=partition, partitions=partitions)


def read_touchpoint(value: bytes | None, key: bytes | None, headers: Sequence[tuple[str, bytes]], *,
                    partition: int | None = None, partitions: int | None = None) -> ReadTouchpoint:
    """Decode a touchpoint record and its identity decision; ``BadRecord`` otherwise.

    With ``partition`` and ``partitions``, a record whose customer belongs on another
    partition is ``misrouted``: each customer must have one partition, hence one worker
    folding it, or two workers would each rewrite the view without the other's events."""
    read = _read(value, key, headers)
    if partitions and partition is not None:
        home = partition_of(read.customer_id, partitions)
        if home != partition:
            raise BadRecord("misrouted", f"the customer's records belong on partition {home} of {partitions}, "
                                         f"this one is on {partition}")
    return read


def _read(value: bytes | None, key: bytes | None, headers: Sequence[tuple[str, bytes]]) -> ReadTouchpoint:
    if value is None:
        raise BadRecord("undecodable", "record has no value")
    try:
        event = decode(value)
    except Exception as error:  # noqa: BLE001 - every way a payload can be wrong is a dead letter
        raise BadRecord("undecodable", f"{type(error).__name__}: {error}") from None
    raw = next((v for k, v in headers if k == RESOLUTION_HEADER), None)
    if raw is None:
        named = event.customer.customer_id or (key.decode("utf-8", "replace") if key else None)
        if not named:
            raise BadRecord("unresolved", "no resolution header, no customer id and no record key")
        return ReadTouchpoint(event, named, {})
    try:
        decision = orjson.loads(raw)
        identifiers = identifiers_of(event.customer)
        conflicts = {identifiers[int(i)]: str(owner) for i, owner in decision["conflicts"]}
        customer_id = decision["customer_id"]
        if not isinstance(customer_id, str) or not customer_id:
            raise ValueError("customer_id must be a non-empty string")
    except (ValueError, KeyError, IndexError, TypeError) as error:
        raise BadRecord("unresolved", f"bad {RESOLUTION_HEADER} header: {type(error).__name__}: {error}") from None
    return ReadTouchpoint(event, customer_id, conflicts)


def ce_time(at: int | None) -> list[tuple[str, bytes]]:
    """The CloudEvents ``ce_time`` header of an occurrence at ``at`` (µs; None: none known),
    in the one textual form instants have: what every derived record carries."""
    return [] if at is None else [("ce_time", format_instant(instant_of(at)).encode())]
