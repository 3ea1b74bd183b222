"""Key layout of the scale-out view store in Redis, declared once: the names the code
builds (``RedisKeys``) and the table docs/REDIS_KEYS.md is generated from (``KEYS``,
``services.scaleout.redis.keys_doc``).

**Hash tags: one slot per partition.** Redis Cluster runs a script or a MULTI/EXEC only
when every key it names hashes to one slot, and hashes only the part of a key between
the first ``{`` and the next ``}``. So every key a partition's fenced commit writes
carries that partition's tag, ``{p<partition>}``: the partition's position, clock,
deadlines, RFM cells, stage counts, figures and streams, and the keys of every customer
whose events are on that partition (a customer's partition is the topic's:
``murmur2(customer id) % partitions``, ``services.scaleout.kafka.records.partition_of``).
A reader finds a customer's keys the same way. What ingest writes shares the ``{ingest}``
tag (positions, the event-id index), the identity index the ``{identity}`` tag (a batch's
claims are all-or-none), the webhook dispatcher's count the ``{delivery}`` tag; the rest
are single keys. Every multi-key call is within one tag: tested on a Redis in cluster
mode, which refuses a cross-slot call (tests/integration/test_redis_cluster.py).

Names: ``<prefix>`` is configurable (default ``touchstream``, no braces); customer ids,
identifier values, event ids and topic names are written as given (UTF-8) and may contain
``:``; an identifier kind never does; a partition is a decimal integer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

import orjson

from services.scaleout.kafka.records import partition_of

__all__ = ["RedisKeys", "KEYS", "Key", "KEY_LAYOUT", "conflict_record", "dead_letter_record", "STREAM_FIELD"]

STREAM_FIELD = b"record"  # the one field of every stream entry
KEY_LAYOUT = 2  # 2: partition hash tags (1: untagged keys, before Redis Cluster)


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """Key names under ``prefix`` for a topic of ``partitions`` partitions (the count
    places a customer's keys: ``partition_of``)."""

    prefix: str = "touchstream"
    partitions: int = 1

    def __post_init__(self) -> None:
        if "{" in self.prefix or "}" in self.prefix:
            raise ValueError(f"the Redis prefix {self.prefix!r} must not contain braces: they make hash tags")
        if self.partitions < 1:
            raise ValueError(f"partitions must be at least 1, not {self.partitions}")

    # -- a partition's slot -------------------------------------------------------------
    def tag(self, partition: int) -> str:
        """``<prefix>:{p<partition>}``: what every key of the partition starts with."""
        return f"{self.prefix}:{{p{int(partition)}}}"

    def partition_of(self, customer_id: str) -> int:
        return partition_of(customer_id, self.partitions)

    def _customer(self, kind: str, customer_id: str, partition: int | None) -> str:
        p = self.partition_of(customer_id) if partition is None else partition
        return f"{self.tag(p)}:{kind}:{customer_id}"

    def view(self, customer_id: str, partition: int | None = None) -> str:
        return self._customer("view", customer_id, partition)

    def state(self, customer_id: str, partition: int | None = None) -> str:
        return self._customer("state", customer_id, partition)

    def timeline(self, customer_id: str, partition: int | None = None) -> str:
        return self._customer("timeline", customer_id, partition)

    def events(self, customer_id: str, partition: int | None = None) -> str:
        return self._customer("events", customer_id, partition)

    def position(self, topic: str, partition: int) -> str:
        return f"{self.tag(partition)}:pos:{topic}"

    def changed(self, topic: str, partition: int) -> str:
        return f"{self.tag(partition)}:changed:{topic}"

    def acks(self, topic: str, partition: int) -> str:
        return f"{self.tag(partition)}:acks:{topic}"

    def deadlines(self, topic: str, partition: int) -> str:
        return f"{self.tag(partition)}:deadlines:{topic}"

    def clock(self, topic: str, partition: int) -> str:
        return f"{self.tag(partition)}:clock:{topic}"

    def rfm(self, topic: str, partition: int) -> str:
        return f"{self.tag(partition)}:rfm:{topic}"

    def stages(self, partition: int) -> str:
        return f"{self.tag(partition)}:stages"

    def transitions(self, partition: int) -> str:
        return f"{self.tag(partition)}:transitions"

    def triggers(self, partition: int, channel: str | None = None) -> str:
        base = f"{self.tag(partition)}:triggers"
        return base if channel is None else f"{base}:{channel}"

    def contact_figures(self, partition: int) -> str:
        return f"{self.tag(partition)}:nbc-figures"

    def conflicts(self, partition: int) -> str:
        return f"{self.tag(partition)}:conflicts"

    def deadletters(self, partition: int) -> str:
        return f"{self.tag(partition)}:deadletters"

    def listing(self, stream: str, partition: int) -> str:
        """The position index of the partition's ``conflicts`` or ``deadletters`` entries."""
        if stream not in ("conflicts", "deadletters"):
            raise ValueError(f"no listing of {stream!r}")
        return f"{self.tag(partition)}:{stream}-by-position"

    def segment(self, partition: int, segment_id: str) -> str:
        return f"{self.tag(partition)}:segment:{segment_id}"

    def segment_changes(self, partition: int) -> str:
        return f"{self.tag(partition)}:segment-changes"

    # -- ingest's slot -------------------------------------------------------------------
    @property
    def sequence(self) -> str:
        return f"{self.prefix}:{{ingest}}:seq"

    @property
    def high_water(self) -> str:
        return f"{self.prefix}:{{ingest}}:acked"

    def event(self, event_id: str) -> str:
        return f"{self.prefix}:{{ingest}}:event:{event_id}"

    # -- the identity index's slot -------------------------------------------------------
    def identifier(self, kind: str, value: str) -> str:
        if ":" in kind:
            raise ValueError(f"identifier kind {kind!r} must not contain ':'")
        return f"{self.prefix}:{{identity}}:id:{kind}:{value}"

    # -- the webhook dispatcher's slot ---------------------------------------------------
    @property
    def delivered(self) -> str:
        return f"{self.prefix}:{{delivery}}:delivered"

    @property
    def delivered_figures(self) -> str:
        return f"{self.prefix}:{{delivery}}:nbc-figures"

    @property
    def delivery_dead_letters(self) -> str:
        return f"{self.prefix}:{{delivery}}:dead-letters"

    def delivery_dead_letter_times(self, channel: str | None = None) -> str:
        base = f"{self.prefix}:{{delivery}}:dead-letters-by-time"
        return base if channel is None else f"{base}:{channel}"

    # -- single keys ---------------------------------------------------------------------
    @property
    def state_format(self) -> str:
        return f"{self.prefix}:state-format"

    @property
    def key_layout(self) -> str:
        return f"{self.prefix}:key-layout"

    def model(self, name: str) -> str:
        return f"{self.prefix}:model:{name}"

    def delivery_cursor(self, name: str) -> str:
        return f"{self.prefix}:delivery-cursor:{name}"

    def lease(self, name: str) -> str:
        return f"{self.prefix}:lease:{name}"

    @property
    def segment_definitions(self) -> str:
        return f"{self.prefix}:segment-definitions"


class Key(NamedTuple):
    """One row of docs/REDIS_KEYS.md: the name is built by ``RedisKeys`` itself."""

    group: str
    build: Callable[[RedisKeys], str]  # the name with placeholders, from the code
    type: str
    writer: str
    content: str


_COMMIT = "worker commit script"
_P = 7  # a partition placeholder: rendered as <partition>


def _named(build: Callable[[RedisKeys], str]) -> Callable[[RedisKeys], str]:
    return lambda k: build(k).replace(f"{{p{_P}}}", "{p<partition>}")


def _k(group: str, build: Callable[[RedisKeys], str], kind: str, writer: str, content: str) -> Key:
    return Key(group, _named(build), kind, writer, content)


KEYS: tuple[Key, ...] = (
    _k("views", lambda k: k.view("<customer_id>", _P), "string", _COMMIT,
       "the published 360° customer document, JSON (`to_document`, Avro contract `schemas/view/customer_view`). "
       "**This is what downstream services read.**"),
    _k("views", lambda k: k.state("<customer_id>", _P), "string", _COMMIT,
       "the worker's stored state, JSON (`to_state`: complete, with the latest 128 event ids folded — the "
       "idempotency window — and instants as integer microseconds). Internal: read `view`, not this."),
    _k("views", lambda k: k.timeline("<customer_id>", _P), "sorted set", _COMMIT,
       "the customer's event ids, score = `occurred_at` in epoch microseconds (ties ordered by event id)."),
    _k("views", lambda k: k.events("<customer_id>", _P), "hash", _COMMIT,
       "event id → the touchpoint record's value as it was on the topic (Avro single-object encoding: decode "
       "with `services.contracts.decode`)."),
    _k("views", lambda k: k.position("<topic>", _P), "string", _COMMIT,
       "decimal offset of the last record of that Kafka partition folded into the partition's keys. Absent: "
       "nothing folded yet (the store reports -1)."),
    _k("views", lambda k: k.changed("<topic>", _P), "hash", _COMMIT,
       "customer id → decimal offset of the last batch of that partition that wrote the customer's state (the "
       "batch's last offset, which became `pos`); `touchstream replay` reads it with the state to tell a state "
       "written after its snapshot from a wrong one."),
    _k("views", lambda k: k.conflicts(_P), "stream", _COMMIT,
       "one entry per identity conflict; field `record` = JSON `{\"topic\", \"partition\", \"offset\", "
       "\"event_id\", \"customer_id\", \"conflicts\": [{\"kind\", \"owner\"}], \"position\"}`: kinds and "
       "owners, never identifier values; `position`: what ingest gave the event, null when none was known at "
       "commit"),
    _k("views", lambda k: k.deadletters(_P), "stream", _COMMIT,
       "one entry per record a worker could not decode or fold; field `record` = JSON `{\"topic\", "
       "\"partition\", \"offset\", \"event_id\", \"reason\", \"position\"}` (no payload: the raw record "
       "stays on the dead-letter topic)"),
    _k("views", lambda k: k.listing("conflicts", _P), "sorted set", _COMMIT,
       "the partition's conflict entries (member: the same JSON) by the position ingest gave their event "
       "(score; 0: none known when committed): what `GET /v1/conflicts?after=` pages through, a page at a time"),
    _k("views", lambda k: k.listing("deadletters", _P), "sorted set", _COMMIT,
       "the partition's dead-letter entries, the same way: what `GET /v1/dead-letters?after=` pages through"),
    _k("views", lambda k: k.state_format, "string", "the first worker on an empty prefix",
       "the stored-state format (`STATE_FORMAT`) of every state under the prefix; a worker of another format "
       "refuses to fold (docs/SCALE_OUT.md)."),
    _k("views", lambda k: k.key_layout, "string", "the first worker on an empty prefix",
       f"the key layout of the prefix ({KEY_LAYOUT}: partition hash tags); a worker finding states without it "
       "refuses to fold, as for another state format."),
    _k("ingest", lambda k: k.sequence, "string", "ingest", "the last position given: the global log head."),
    _k("ingest", lambda k: k.high_water, "hash", "ingest",
       "`<topic>:<partition>` → the highest offset ingest has seen acknowledged."),
    _k("ingest", lambda k: k.event("<event_id>"), "string", "ingest",
       "the position ingest gave the event (first acknowledged copy wins); how a re-sent event is answered "
       "`duplicate`."),
    _k("ingest", lambda k: k.acks("<topic>", _P), "sorted set", "ingest; trimmed by the worker commit script",
       "score = a position, member = the highest offset of that partition acknowledged up to it. Entries at or "
       "below the partition's `pos` are trimmed by the commit."),
    _k("identity", lambda k: k.identifier("<kind>", "<value>"), "string", "ingest, then the worker (`SET NX`)",
       "the customer id that owns the identifier. Kinds: `external_id` (value `system:id`), `email`, `phone`. "
       "First writer wins; never overwritten."),
    _k("lifecycle", lambda k: k.deadlines("<topic>", _P), "sorted set", _COMMIT,
       "member = customer id, score = the customer's next lifecycle deadline (µs); removed when there is none "
       "(a prospect, a lost customer)"),
    _k("lifecycle", lambda k: k.clock("<topic>", _P), "string", _COMMIT,
       "the latest clock tick folded on the partition (µs): passed to every event folded after it"),
    _k("lifecycle", lambda k: k.transitions(_P), "stream", _COMMIT,
       "field `record`: the LifecycleStageChanged JSON (schemas/lifecycle/stage_changed)"),
    _k("lifecycle", lambda k: k.stages(_P), "hash", _COMMIT,
       "stage → the partition's customers in it (HINCRBY with each batch's changes); the portfolio is the sum "
       "over partitions"),
    _k("value", lambda k: k.rfm("<topic>", _P), "hash", _COMMIT,
       "the partition's RFM cells: field `r:f:m:c` → customers in the cell, `r:f:m:v` → their revenue in "
       "ten-thousandths of the value currency; the portfolio is the sum over partitions"),
    _k("value", lambda k: k.model("<name>"), "string", "the refit (`POST /v1/value/refit`, every "
       "`value_refit_seconds`)",
       "a fitted model as JSON; `bgnbd`: the purchase model with its spend model, observation end and inputs' "
       "fingerprint (docs/VALUE.md)"),
    _k("contact", lambda k: k.triggers(_P), "stream", _COMMIT,
       "every trigger of the partition's customers, all channels: field `record` = the trigger document JSON "
       "(docs/TRIGGERS.md); capped near 1,000,000 entries (`MAXLEN ~`)"),
    _k("contact", lambda k: k.triggers(_P, "<channel>"), "stream", _COMMIT,
       "the same entries, one channel's (`call`, `email`, `sms`, …)"),
    _k("contact", lambda k: k.contact_figures(_P), "hash", _COMMIT,
       "`<rule>|<version>|<channel>|<figure>` → count; figures: `fired`, `suppressed:<reason>`, `reached`, "
       "`not_reached`, `declined`, `converted`; the figures are the sum over partitions plus the delivered "
       "counts"),
    _k("contact", lambda k: k.delivered, "set", "the webhook dispatcher",
       "trigger ids a channel system acknowledged: the `delivered` figure counts each once, in the same script"),
    _k("contact", lambda k: k.delivered_figures, "hash", "the webhook dispatcher",
       "`<rule>|<version>|<channel>|delivered` → count"),
    _k("contact", lambda k: k.delivery_cursor("<name>"), "string", "the webhook dispatcher",
       "the feed cursor a dispatcher (one per channel) delivered up to"),
    _k("contact", lambda k: k.delivery_dead_letters, "hash", "the webhook dispatcher",
       "trigger id → the delivery given up on, JSON: `trigger_id`, `channel`, `outcome` (`failed_permanent`, "
       "`dead_lettered`), `status` (the last HTTP status, or null), `reason`, `attempts`, `at`, `trigger`"),
    _k("contact", lambda k: k.delivery_dead_letter_times(), "sorted set", "the webhook dispatcher",
       "trigger id by when it was given up (score: µs): the newest page of the listing, without reading all"),
    _k("contact", lambda k: k.delivery_dead_letter_times("<channel>"), "sorted set", "the webhook dispatcher",
       "the same, one channel's"),
    _k("contact", lambda k: k.lease("<name>"), "string", "every API process",
       "the process holding the named lease (`webhooks`: only its holder delivers), with an expiry it renews"),
    _k("segments", lambda k: k.segment(_P, "<segment_id>"), "hash", f"{_COMMIT}, `touchstream segments rebuild`",
       "customer id → since (µs) for every member of the segment on the partition; the size is the sum of HLEN "
       "over partitions"),
    _k("segments", lambda k: k.segment_changes(_P), "stream", f"{_COMMIT}, `touchstream segments rebuild`",
       "field `record`: the SegmentMembershipChanged JSON (schemas/segment/membership_changed)"),
    _k("segments", lambda k: k.segment_definitions, "hash", "`touchstream segments rebuild`",
       "segment id → `version:fingerprint` the members were last re-evaluated for"),
)


def conflict_record(
    topic: str, partition: int, offset: int, event_id: str, customer_id: str,
    conflicts: Iterable[tuple[tuple[str, str], str]],
) -> bytes:
    """A conflicts entry from ``Resolution.conflicts`` ((kind, value), owner): the
    identifier *values* are dropped here, so no PII reaches the stream."""
    detail = [{"kind": kind, "owner": owner} for (kind, _value), owner in conflicts]
    return orjson.dumps({"topic": topic, "partition": partition, "offset": offset, "event_id": event_id,
                         "customer_id": customer_id, "conflicts": detail})


def dead_letter_record(topic: str, partition: int, offset: int, event_id: str | None, reason: str) -> bytes:
    return orjson.dumps({"topic": topic, "partition": partition, "offset": offset, "event_id": event_id,
                         "reason": reason})
