"""Key layout of the scale-out view store in Redis (documented for downstream readers in
docs/REDIS_KEYS.md; keep the two in step).

Every key starts with a configurable prefix (default ``touchstream``); ``{customer_id}``,
``{value}`` and ``{topic}`` are written as given (UTF-8), so a value may itself contain
``:``. ``{kind}`` never does, and ``{partition}`` is a decimal integer (the last segment).

=================================  ===========================================================
key                                value
=================================  ===========================================================
``{prefix}:view:{customer_id}``    string: the published 360° document as JSON
                                   (``projections.view.document.to_document``), what
                                   downstream services read
``{prefix}:state:{customer_id}``   string: the stored state as JSON (``to_state``, format 4),
                                   complete with its idempotency window; for the worker only
``{prefix}:id:{kind}:{value}``     string: the customer id owning that identifier (kinds:
                                   ``external_id``, ``email``, ``phone``); first writer wins,
                                   never overwritten
``{prefix}:pos:{topic}:{partition}``  string: decimal offset of the last record of that
                                   partition folded into the keys above (absent: none, -1)
``{prefix}:changed:{topic}:{partition}``  hash: customer id -> decimal offset of the
                                   last batch of that partition that wrote the customer's
                                   state (the batch's last offset, its ``pos`` once
                                   committed); how ``touchstream replay`` tells a state that
                                   moved on past its snapshot from a wrong one
``{prefix}:timeline:{customer_id}``  sorted set: the customer's event ids, score = occurred_at
                                   in epoch microseconds (ties ordered by event id)
``{prefix}:events:{customer_id}``  hash: event id → the touchpoint record's value as it was on
                                   the topic (Avro single-object encoding)
``{prefix}:event:{event_id}``      string: the position ingest gave the event (first copy wins)
``{prefix}:state-format``          string: the stored-state format of every state under the prefix
                                   (claimed by the first worker; another format: refold, see below)
``{prefix}:seq``                   string: the last position given (the global log head)
``{prefix}:acked``                 hash: ``{topic}:{partition}`` → highest offset acknowledged
``{prefix}:acks:{topic}:{partition}``  sorted set: score = a position, member = the highest
                                   offset of that partition acknowledged up to it; entries
                                   at or below the partition's ``pos`` are trimmed
``{prefix}:conflicts``             stream: one entry per identity conflict, field ``record``
                                   = JSON ``{"topic", "partition", "offset", "event_id",
                                   "customer_id", "conflicts": [{"kind", "owner"}]}``; kinds
                                   and owning customers only, never identifier values
``{prefix}:triggers[:{channel}]``  stream: next-best-contact triggers (field ``record``: the
                                   trigger document JSON), all channels and per channel
``{prefix}:nbc-figures``           hash: ``rule|version|channel|figure`` -> count
``{prefix}:delivery-cursor:{name}``  string: a webhook dispatcher's position in its stream
``{prefix}:delivery-dead-letters``  hash: trigger id -> a delivery a webhook gave up on (JSON)
``{prefix}:delivered``             set: trigger ids a channel system acknowledged
``{prefix}:lease:{name}``          string: the process holding a lease (``webhooks``), expiring
``{prefix}:deadletters``           stream: one entry per record the worker could not decode
                                   or fold, field ``record`` = JSON ``{"topic", "partition",
                                   "offset", "event_id", "reason"}`` (no payload: the raw
                                   record stays on the dead-letter topic)
=================================  ===========================================================

Views, states, links, conflict and dead-letter entries of one partition batch are written
together with that partition's position, atomically, by one Lua script; so a reader that
sees ``pos`` at ``n`` sees every view change of that partition up to offset ``n``, and
each state's ``changed`` offset is the batch that wrote it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import orjson

__all__ = ["RedisKeys", "conflict_record", "dead_letter_record", "STREAM_FIELD"]

STREAM_FIELD = b"record"  # the one field of a conflicts/deadletters stream entry


@dataclass(frozen=True, slots=True)
class RedisKeys:
    prefix: str = "touchstream"

    def view(self, customer_id: str) -> str:
        return f"{self.prefix}:view:{customer_id}"

    def state(self, customer_id: str) -> str:
        return f"{self.prefix}:state:{customer_id}"

    def identifier(self, kind: str, value: str) -> str:
        if ":" in kind:
            raise ValueError(f"identifier kind {kind!r} must not contain ':'")
        return f"{self.prefix}:id:{kind}:{value}"

    def position(self, topic: str, partition: int) -> str:
        return f"{self.prefix}:pos:{topic}:{int(partition)}"

    def changed(self, topic: str, partition: int) -> str:
        """Hash: customer id -> offset of the partition batch that last wrote its state."""
        return f"{self.prefix}:changed:{topic}:{int(partition)}"

    def timeline(self, customer_id: str) -> str:
        return f"{self.prefix}:timeline:{customer_id}"

    def events(self, customer_id: str) -> str:
        return f"{self.prefix}:events:{customer_id}"

    def event(self, event_id: str) -> str:
        return f"{self.prefix}:event:{event_id}"

    def deadlines(self, topic: str, partition: int) -> str:
        """Sorted set: customer id -> next lifecycle deadline (µs) of that partition's customers."""
        return f"{self.prefix}:deadlines:{topic}:{int(partition)}"

    def clock(self, topic: str, partition: int) -> str:
        """The latest clock tick folded on that partition (µs)."""
        return f"{self.prefix}:clock:{topic}:{int(partition)}"

    @property
    def transitions(self) -> str:
        """Stream of lifecycle transitions (field ``record``: the LifecycleStageChanged JSON)."""
        return f"{self.prefix}:transitions"

    def rfm(self, topic: str, partition: int) -> str:
        """Hash of the portfolio's RFM cells on that partition (``r:f:m:c`` customers,
        ``r:f:m:v`` revenue in ten-thousandths)."""
        return f"{self.prefix}:rfm:{topic}:{int(partition)}"

    def model(self, name: str) -> str:
        """A fitted model (services.value), JSON."""
        return f"{self.prefix}:model:{name}"

    @property
    def stages(self) -> str:
        """Hash: stage -> customers in it."""
        return f"{self.prefix}:stages"

    def triggers(self, channel: str | None = None) -> str:
        """Stream of next-best-contact triggers (field ``record``: the trigger document JSON),
        all channels, or one channel's."""
        return f"{self.prefix}:triggers" if channel is None else f"{self.prefix}:triggers:{channel}"

    @property
    def contact_figures(self) -> str:
        """Hash: ``{rule}|{version}|{channel}|{figure}`` -> count (services.nbc.figures)."""
        return f"{self.prefix}:nbc-figures"

    def delivery_cursor(self, name: str) -> str:
        return f"{self.prefix}:delivery-cursor:{name}"

    @property
    def delivered(self) -> str:
        """Set: trigger ids a channel system acknowledged (the delivered figure counts each once)."""
        return f"{self.prefix}:delivered"

    def lease(self, name: str) -> str:
        """String: the process holding the named lease (``webhooks``), with its expiry."""
        return f"{self.prefix}:lease:{name}"

    @property
    def delivery_dead_letters(self) -> str:
        """Hash: trigger id -> the delivery dead letter JSON (a webhook gave up on it)."""
        return f"{self.prefix}:delivery-dead-letters"

    def acks(self, topic: str, partition: int) -> str:
        return f"{self.prefix}:acks:{topic}:{int(partition)}"

    @property
    def state_format(self) -> str:
        """The stored-state format every state under this prefix has (``STATE_FORMAT``)."""
        return f"{self.prefix}:state-format"

    @property
    def sequence(self) -> str:
        return f"{self.prefix}:seq"

    @property
    def high_water(self) -> str:
        return f"{self.prefix}:acked"

    @property
    def conflicts(self) -> str:
        return f"{self.prefix}:conflicts"

    @property
    def deadletters(self) -> str:
        return f"{self.prefix}:deadletters"


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
