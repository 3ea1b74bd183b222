"""``touchstream tail TOPIC``: read a topic as a Kafka user's first tool would, decoded.

Debian's kcat (librdkafka 2.0) cannot read the bundled broker's ApiVersions answer (every
librdkafka before 2.1 misreads its v3 tagged fields: "ApiVersionRequest failed: Local:
Read underflow"), so the local stack ships its own reader on aiokafka, the client the
platform itself uses. Each record is printed as one JSON object: topic, partition,
offset, timestamp, key, headers (text where they are text) and the value decoded — the
Avro contracts (single-object encoding, schemas/), JSON documents (the customer views)
— or, when neither, its bytes in base64.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.contracts import decode_record

__all__ = ["tail", "describe"]


def _text(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(raw).decode()


def _value(raw: bytes | None) -> dict[str, Any]:
    if raw is None:
        return {"value": None}
    try:
        family, document = decode_record(raw)
        return {"contract": family, "value": document}
    except Exception:  # noqa: BLE001 - not one of the contracts: try the next reading
        pass
    try:
        return {"value": orjson.loads(raw)}
    except orjson.JSONDecodeError:
        return {"value_base64": base64.b64encode(raw).decode()}


def describe(record: Any) -> dict[str, Any]:
    """One consumer record as a JSON-ready dict."""
    return {"topic": record.topic, "partition": record.partition, "offset": record.offset,
            "timestamp": record.timestamp, "key": _text(record.key),
            "headers": {k: _text(v) for k, v in (record.headers or ())}, **_value(record.value)}


async def tail(bootstrap: str, topic: str, *, from_beginning: bool = True, limit: int | None = None,
               idle_seconds: float | None = 2.0) -> AsyncIterator[dict[str, Any]]:
    """Records of every partition of ``topic``: from the start (else only new ones), at
    most ``limit``, until nothing arrives for ``idle_seconds`` (None: follow forever).
    No consumer group: reading commits nothing and moves nobody's offsets."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                fetch_max_wait_ms=100)
    await consumer.start()
    try:
        if topic not in await consumer.topics():  # also loads the cluster's metadata
            raise LookupError(f"no topic {topic!r} on {bootstrap}")
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        if not partitions:
            raise LookupError(f"no topic {topic!r} on {bootstrap}")
        assigned = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(assigned)
        if from_beginning:
            await consumer.seek_to_beginning(*assigned)
        else:
            await consumer.seek_to_end(*assigned)
        seen, idle = 0, 0.0
        while limit is None or seen < limit:
            batch = await consumer.getmany(timeout_ms=200)
            records = [r for part in batch.values() for r in part]
            if not records:
                idle += 0.2
                if idle_seconds is not None and idle >= idle_seconds:
                    return
                continue
            idle = 0.0
            for record in sorted(records, key=lambda r: (r.timestamp, r.partition, r.offset)):
                yield describe(record)
                seen += 1
                if limit is not None and seen >= limit:
                    return
    finally:
        await consumer.stop()


def run(bootstrap: str, topic: str, *, from_beginning: bool, limit: int | None, follow: bool) -> int:
    """Print each record as one JSON line; the number printed."""
    async def main() -> int:
        n = 0
        async for row in tail(bootstrap, topic, from_beginning=from_beginning, limit=limit,
                              idle_seconds=None if follow else 2.0):
            print(orjson.dumps(row, default=str).decode(), flush=True)
            n += 1
        return n

    return asyncio.run(main())
