"""The recorded history a backtest reads: every accepted touchpoint with its decided customer.

Embedded: the SQLite log, each event under the customer the projection runner decided
(the view store's timeline maps log positions to customers; an event the runner could
not fold is a dead letter and is left out). Scale-out: the touchpoints topic from the
start, each record under the customer ingest decided (its resolution header), clock ticks
left out (a backtest moves time itself).
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import orjson

from projections.codec import from_dict
from projections.identity import settled
from projections.merge import Merges
from projections.touchpoints import Touchpoint
from services.progress import meter
from services.settings import Settings

__all__ = ["embedded_history", "kafka_history"]


def embedded_history(settings: Settings) -> list[tuple[str, Touchpoint]]:
    from services.embedded.eventlog import TouchpointLog
    from services.embedded.storage.unit import ViewStore

    views = ViewStore(settings.views_path)
    try:
        merges = Merges.of(views.identity.merges_in_force())
        with views.datastore.transaction(commit=False) as c:
            c.execute("SELECT position, customer_id FROM timeline")
            owner = {r[0]: merges.root(r[1]) for r in c.fetchall()}  # each event as the customer it is shown as
    finally:
        views.datastore.close()
    log = TouchpointLog(settings.log_path)
    out: list[tuple[str, Touchpoint]] = []
    try:
        position = 0
        with meter("reading the log", total=log.head()) as shown:
            while True:
                records = log.read(position, 5000)
                if not records:
                    break
                shown.update(records[-1].position)
                for record in records:
                    customer = owner.get(record.position)
                    if customer is not None and record.topic.startswith("touchpoint/"):
                        event = from_dict(orjson.loads(record.state))
                        out.append((customer, settled(event, customer, {}).folded))
                position = records[-1].position
    finally:
        log.close()
    return out


async def kafka_history(settings: Settings) -> list[tuple[str, Touchpoint]]:
    import time

    from aiokafka import AIOKafkaConsumer, TopicPartition

    from services.contracts.confluent import ConfluentRegistry, framed_schema_id
    from services.scaleout.kafka.records import BadRecord, ReadTouchpoint, read_record
    topic = settings.kafka_touchpoints_topic
    registry = ConfluentRegistry(settings.schema_registry_url) if settings.schema_registry_url else None
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=10)
    await consumer.start()
    out: list[tuple[str, Touchpoint]] = []
    held = ExitStack()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, 0)
        # The end of each partition is the high watermark fetch responses carry (Tansu
        # answers ListOffsets(latest) with the last batch's base offset), as the replay reads it.
        ended: set[Any] = set()
        last_progress = time.monotonic()
        shown = held.enter_context(meter("reading the topic"))
        while len(ended) < len(partitions):
            polled = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for records in polled.values():
                last_progress = time.monotonic()
                shown.advance(len(records))
                if registry is not None:
                    await registry.learn({i for r in records if (i := framed_schema_id(r.value)) is not None})
                for record in records:
                    try:
                        read = read_record(record.value, record.key, record.headers)
                    except BadRecord:
                        continue  # a dead letter for the worker too
                    if isinstance(read, ReadTouchpoint):
                        out.append((read.customer_id, settled(read.event, read.customer_id, read.conflicts).folded))
            for tp in partitions:
                high = consumer.highwater(tp)
                if tp not in ended and high is not None and await consumer.position(tp) >= high:
                    ended.add(tp)
            if time.monotonic() - last_progress > 30:
                raise TimeoutError(f"no progress reading {topic} for 30 s")
    finally:
        held.close()
        await consumer.stop()
        if registry is not None:
            await registry.aclose()
    return out
