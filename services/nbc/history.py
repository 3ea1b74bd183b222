"""The recorded history a backtest reads: every accepted touchpoint with its decided customer.

Embedded: the SQLite log, each event under the customer the projection runner decided
(the view store's timeline maps log positions to customers; an event the runner could
not fold is a dead letter and is left out). Scale-out: the touchpoints topic from the
start, each record under the customer ingest decided (its resolution header), clock ticks
left out (a backtest moves time itself).
"""

from __future__ import annotations

from typing import Any

import orjson

from projections.codec import from_dict
from projections.identity import settled
from projections.touchpoints import Touchpoint
from services.settings import Settings

__all__ = ["embedded_history", "kafka_history"]


def embedded_history(settings: Settings) -> list[tuple[str, Touchpoint]]:
    from services.eventlog import TouchpointLog
    from services.viewstore import ViewStore

    views = ViewStore(settings.views_path)
    try:
        with views.datastore.transaction(commit=False) as c:
            c.execute("SELECT position, customer_id FROM timeline")
            owner = {r[0]: r[1] for r in c.fetchall()}
    finally:
        views.datastore.close()
    log = TouchpointLog(settings.log_path)
    out: list[tuple[str, Touchpoint]] = []
    try:
        position = 0
        while True:
            records = log.read(position, 5000)
            if not records:
                break
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
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from services.kafka.records import BadRecord, ReadTouchpoint, read_record
    from services.kafka.topics import TOUCHPOINTS_TOPIC

    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=10)
    await consumer.start()
    out: list[tuple[str, Touchpoint]] = []
    try:
        partitions = [TopicPartition(TOUCHPOINTS_TOPIC, p)
                      for p in sorted(consumer.partitions_for_topic(TOUCHPOINTS_TOPIC) or ())]
        consumer.assign(partitions)
        ends: dict[Any, int] = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        remaining = {tp for tp in partitions if ends[tp] > 0}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=1000, max_records=5000)
            for tp, records in batches.items():
                for record in records:
                    try:
                        read = read_record(record.value, record.key, record.headers)
                    except BadRecord:
                        continue  # a dead letter for the worker too
                    if isinstance(read, ReadTouchpoint):
                        out.append((read.customer_id,
                                    settled(read.event, read.customer_id, read.conflicts).folded))
                if records and records[-1].offset >= ends[tp] - 1:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return out
