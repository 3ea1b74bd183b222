"""What a partition batch's segment entries and exits write and publish (pure, no I/O).

Each change becomes a member write (segment, customer, since; since None: the customer
left), a feed record for the Redis stream, and a ``SegmentMembershipChanged`` Avro record
for ``touchstream.segments.v1``. The cause is topic/partition/offset of the record that
last changed the customer's view in the batch, so a batch re-folded after a crash
gives the same change ids (ce_id) again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import orjson

from projections.segments.membership import ENTERED, Change
from services.contracts import encode_record
from services.scaleout.kafka.records import ce_time
from services.scaleout.redis.segments import SegmentWrites
from services.segments.changes import change_document, change_id

__all__ = ["segment_writes", "segment_headers"]


def segment_writes(changes: Sequence[Change], topic: str, partition: int,
                   offsets: Mapping[str, int]) -> tuple[SegmentWrites, list[tuple[str, str, int | None, bytes]]]:
    """(the commit's writes, the events to publish: (customer, change id, at µs, Avro))."""
    writes, events = SegmentWrites(), []
    for ch in changes:
        cause = f"{topic}/{partition}/{offsets[ch.customer_id]}"
        document = change_document(change_id(ch, cause), ch.segment, ch.version, ch.customer_id, ch.kind, ch.at,
                                   cause)
        writes.members.append((ch.segment, ch.customer_id, (ch.at or 0) if ch.kind == ENTERED else None))
        writes.feed.append(orjson.dumps(document))
        events.append((ch.customer_id, document["change_id"], ch.at,
                       encode_record("segment/membership_changed", document)))
    return writes, events


_STATIC = [("ce_specversion", b"1.0"), ("ce_type", b"touchstream.segment.membership_changed"),
           ("ce_source", b"touchstream/view-worker"), ("content-type", b"application/avro")]


def segment_headers(change_id_: str, at: int | None) -> list[tuple[str, bytes]]:
    """CloudEvents headers of an entry or exit: its deterministic id, and its instant."""
    return [*_STATIC, ("ce_id", change_id_.encode()), *ce_time(at)]
