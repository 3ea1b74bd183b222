"""``touchstream tail``: a Kafka user's first look at the topics, on the bundled broker that
librdkafka before 2.1 (Debian's kcat) cannot talk to. Run as a user runs it (the command
line), against a real broker: Avro touchpoints come out decoded with their CloudEvents
headers, JSON documents as JSON, anything else as base64, one JSON object a line."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import uuid
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.scaleout.kafka.publisher import TouchpointPublisher
from tests.integration.test_kafka_publisher import examples
from tests.support.tansu import TansuBroker


def tail(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "TOUCHSTREAM_KAFKA_BOOTSTRAP": bootstrap}
    return subprocess.run([sys.executable, "-m", "services.cli", "tail", *args], env=environment,
                          capture_output=True, text=True, timeout=60, check=False)


def test_tail_prints_every_record_of_a_topic_decoded_one_json_line_each(tansu: TansuBroker) -> None:
    topic = f"tail-{uuid.uuid4().hex[:8]}"
    docs = examples(topic)[:3]

    async def fill() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=tansu.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
        finally:
            await admin.close()
        publisher = TouchpointPublisher(tansu.bootstrap, topic=topic, request_timeout_ms=1500)
        await publisher.start()
        try:
            await publisher.publish(docs)
        finally:
            await publisher.stop()
        producer = AIOKafkaProducer(bootstrap_servers=tansu.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topic, key=b"view-1", value=b'{"customer_id": "view-1"}', partition=0)
            await producer.send_and_wait(topic, key=None, value=b"\xff\x00 not json", partition=1)
        finally:
            await producer.stop()

    asyncio.run(fill())
    done = tail(tansu.bootstrap, topic)
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) == 5
    decoded = {r["value"]["event_id"]: r for r in rows if "contract" in r}
    assert set(decoded) == {d["event_id"] for d in docs}
    for doc in docs:
        row = decoded[doc["event_id"]]
        assert row["contract"] == f"touchpoint/{doc['type']}" and row["value"]["type"] == doc["type"]
        assert row["key"] == doc["customer"]["customer_id"] and row["headers"]["ce_id"] == doc["event_id"]
    (document,) = [r for r in rows if r["key"] == "view-1"]
    assert document["value"] == {"customer_id": "view-1"} and document["partition"] == 0
    (raw,) = [r for r in rows if "value_base64" in r]
    assert base64.b64decode(raw["value_base64"]) == b"\xff\x00 not json" and raw["key"] is None

    assert [json.loads(line) for line in tail(tansu.bootstrap, topic, "--limit", "2").stdout.splitlines()] == rows[:2]


def test_tail_of_a_topic_that_does_not_exist_says_so(tansu: TansuBroker) -> None:
    done = tail(tansu.bootstrap, f"absent-{uuid.uuid4().hex[:8]}")
    assert done.returncode == 1 and "no topic" in done.stderr and done.stdout == ""
