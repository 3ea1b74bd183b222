"""Ingest → Kafka against a real Tansu broker: topics from schemas/topics.yaml, the
idempotence probe, keyed Avro records with CloudEvents headers read back by a consumer,
per-customer partitioning and order, refusals, and a stopped broker answering
StorageUnavailable within the request timeout.

The broker is the session's (``tansu`` fixture), so records are read back at the offsets
``publish`` returned and event ids are unique per test.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from structlog.testing import capture_logs

from projections.codec import from_dict
from services.contracts import decode
from services.ports import StorageUnavailable
from services.scaleout.kafka.publisher import TouchpointPublisher
from services.scaleout.kafka.topics import (
    CUSTOMER_VIEWS_TOPIC,
    DEAD_LETTERS_TOPIC,
    TOUCHPOINTS_TOPIC,
    TopicCreationFailed,
    default_topics,
    ensure_topics,
    kafka_streams,
)
from tests.support.tansu import TansuBroker

PARTITIONS = 4
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "touchpoint"


def examples(tag: str) -> list[dict[str, Any]]:
    """Every example message, with event ids unique to ``tag`` and a customer id on each."""
    docs = []
    for path in sorted(SCHEMAS.glob("*/v1.examples.json")):
        for doc in json.loads(path.read_text()):
            doc = copy.deepcopy(doc)
            doc["event_id"] = f"{tag}-{doc['event_id']}"
            doc["customer"]["customer_id"] = doc["customer"]["customer_id"] or f"cus-{tag}-{doc['type']}"
            docs.append(doc)
    return docs


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def topics(tansu: TansuBroker) -> str:
    # Before any producer asks for metadata: Tansu auto-creates an unknown topic then,
    # with its own partition count.
    asyncio.run(ensure_topics(tansu.bootstrap, PARTITIONS))
    return tansu.bootstrap


@pytest.fixture
def publisher(topics: str) -> TouchpointPublisher:
    """Not started: each test starts and stops it inside its one event loop."""
    return TouchpointPublisher(topics, request_timeout_ms=1500)


async def publish(pub: TouchpointPublisher, docs: list[dict[str, Any]]) -> list[tuple[int, int]]:
    await pub.start()
    try:
        return await pub.publish(docs)
    finally:
        await pub.stop()


async def read_back(bootstrap: str, positions: list[tuple[int, int]]) -> dict[tuple[int, int], ConsumerRecord]:
    """The records at exactly these (partition, offset) positions, by position."""
    first: dict[int, int] = {}
    for partition, offset in positions:
        first[partition] = min(offset, first.get(partition, offset))
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=10
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(TOUCHPOINTS_TOPIC, p) for p in first])
        for partition, offset in first.items():
            consumer.seek(TopicPartition(TOUCHPOINTS_TOPIC, partition), offset)
        wanted, found = set(positions), {}
        deadline = time.monotonic() + 5
        while wanted - found.keys() and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                for record in batch:
                    if (record.partition, record.offset) in wanted:
                        found[(record.partition, record.offset)] = record
        assert not wanted - found.keys(), f"records never read back: {sorted(wanted - found.keys())}"
        return found
    finally:
        await consumer.stop()


async def describe(bootstrap: str) -> tuple[dict[str, int], dict[str, str]]:
    """Partitions per topic and cleanup.policy per topic, as the broker reports them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        partitions = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(list(default_topics()))}
        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in default_topics()]
        policies = {}
        for response in await admin.describe_configs(resources):
            for resource in response.to_object()["resources"]:
                entries = {e["config_names"]: e["config_value"] for e in resource["config_entries"]}
                policies[resource["resource_name"]] = entries.get("cleanup.policy")
        return partitions, policies
    finally:
        await admin.close()


def test_every_topic_of_the_list_is_created_with_the_configured_partitions_and_its_cleanup_policy(
    topics: str,
) -> None:
    partitions, policies = asyncio.run(describe(topics))
    names = default_topics()
    assert {TOUCHPOINTS_TOPIC, CUSTOMER_VIEWS_TOPIC, DEAD_LETTERS_TOPIC, "touchstream.lifecycle.v1",
            "touchstream.triggers.call.v1", "touchstream.triggers.mail.v1"} <= set(names)
    assert partitions == {name: PARTITIONS for name in names}
    assert policies == {name: kafka_streams()[name].cleanup_policy for name in names}
    assert policies[CUSTOMER_VIEWS_TOPIC] == "compact" and policies[TOUCHPOINTS_TOPIC] == "delete"


def test_ensuring_topics_twice_is_fine_and_creates_nothing_the_second_time(topics: str) -> None:
    assert asyncio.run(ensure_topics(topics, PARTITIONS)) == []
    assert asyncio.run(ensure_topics(topics, PARTITIONS)) == []


def test_named_topics_only_are_created_when_names_are_given_and_unknown_ones_are_refused() -> None:
    with TansuBroker() as broker:  # an empty broker: what exists afterwards is what was created
        assert asyncio.run(ensure_topics(broker.bootstrap, 2, ["touchstream.triggers.sms.v1"])) == [
            "touchstream.triggers.sms.v1"]
        with pytest.raises(ValueError, match="not Kafka topics"):
            asyncio.run(ensure_topics(broker.bootstrap, 2, ["touchstream.nonsense.v1"]))
        with pytest.raises(ValueError, match="at least 1"):
            asyncio.run(ensure_topics(broker.bootstrap, 0))
        assert asyncio.run(ensure_topics(broker.bootstrap, 2)) == [
            name for name in default_topics() if name != "touchstream.triggers.sms.v1"]


def test_an_unreachable_broker_fails_topic_creation_naming_the_topics() -> None:
    with pytest.raises(TopicCreationFailed, match=TOUCHPOINTS_TOPIC):
        asyncio.run(ensure_topics("127.0.0.1:1", PARTITIONS, request_timeout_ms=1000))


def test_the_idempotence_probe_falls_back_on_this_broker_and_says_so(publisher: TouchpointPublisher) -> None:
    async def start_and_stop() -> None:
        await publisher.start()
        await publisher.stop()

    with capture_logs() as logs:
        asyncio.run(start_and_stop())
    assert publisher.idempotent is False
    started = [entry for entry in logs if entry["event"] == "producer_started"]
    assert len(started) == 1 and started[0]["idempotent"] is False
    assert "UnknownError" in started[0]["reason"]


def test_published_touchpoints_read_back_as_the_same_typed_touchpoints_with_cloudevents_headers(
    publisher: TouchpointPublisher,
) -> None:
    docs = examples(unique("roundtrip"))
    positions = asyncio.run(publish(publisher, docs))
    assert len(positions) == len(docs) == len(set(positions))
    records = asyncio.run(read_back(publisher.bootstrap, positions))
    for doc, position in zip(docs, positions, strict=True):
        record = records[position]
        assert decode(record.value) == from_dict(doc)
        assert record.key == doc["customer"]["customer_id"].encode()
        assert dict(record.headers) == {
            "ce_specversion": b"1.0",
            "ce_id": doc["event_id"].encode(),
            "ce_type": f"touchstream.touchpoint.{doc['type']}".encode(),
            "ce_source": doc["source"].encode(),
            "ce_time": doc["occurred_at"].encode(),
            "content-type": b"application/avro",
        }


def test_all_events_of_one_customer_land_on_one_partition_in_order(publisher: TouchpointPublisher) -> None:
    tag = unique("order")
    base = examples(tag)
    customers = [f"cus-{tag}-{n}" for n in range(6)]
    docs = []
    for round_ in range(5):  # interleaved, so order within a customer is not an accident
        for n, customer in enumerate(customers):
            doc = copy.deepcopy(base[(round_ * len(customers) + n) % len(base)])
            doc["event_id"] = f"{tag}-{customer}-{round_}"
            doc["customer"]["customer_id"] = customer
            docs.append(doc)
    positions = asyncio.run(publish(publisher, docs))
    records = asyncio.run(read_back(publisher.bootstrap, positions))
    by_customer: dict[str, list[tuple[int, int, str]]] = {}
    for doc, position in zip(docs, positions, strict=True):
        assert records[position].headers[1] == ("ce_id", doc["event_id"].encode())
        by_customer.setdefault(doc["customer"]["customer_id"], []).append((*position, doc["event_id"]))
    for customer, placed in by_customer.items():
        assert len({partition for partition, _, _ in placed}) == 1, f"{customer} spread over partitions"
        offsets = [offset for _, offset, _ in placed]
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
        assert [event_id for _, _, event_id in placed] == [f"{tag}-{customer}-{r}" for r in range(5)]
    assert len({p for placed in by_customer.values() for p, _, _ in placed}) > 1  # keys do spread


def test_a_document_without_customer_id_is_refused_and_nothing_of_its_batch_is_written(
    publisher: TouchpointPublisher,
) -> None:
    good, bad = examples(unique("refused"))[:2]
    bad["customer"]["customer_id"] = None

    async def attempt() -> tuple[int, int]:
        await publisher.start()
        try:
            with pytest.raises(ValueError, match="no resolved customer.customer_id"):
                await publisher.publish([good, bad])
            return (await publisher.publish([good]))[0]
        finally:
            await publisher.stop()

    partition, offset = asyncio.run(attempt())
    # Had the refused call written `good`, that copy would sit just before this one (same
    # key, same partition, and nothing else writes meanwhile).
    if offset > 0:
        before = asyncio.run(read_back(publisher.bootstrap, [(partition, offset - 1)]))[(partition, offset - 1)]
        assert dict(before.headers)["ce_id"] != good["event_id"].encode()


def test_with_the_broker_stopped_publish_raises_storage_unavailable_within_the_request_timeout(
    tansu: TansuBroker, publisher: TouchpointPublisher
) -> None:
    docs = examples(unique("stopped"))

    async def attempt() -> float:
        await publisher.start()
        await publisher.publish(docs[:1])  # metadata cached: the failure must come from the broker
        tansu.kill()  # not stop(): SIGTERM waits 5 s for connected clients to leave
        started = time.monotonic()
        with pytest.raises(StorageUnavailable, match="did not store"):
            await publisher.publish(docs)
        elapsed = time.monotonic() - started
        await publisher.stop()
        with pytest.raises(StorageUnavailable, match="unreachable"):
            await TouchpointPublisher(tansu.bootstrap, request_timeout_ms=1500).start()
        return elapsed

    try:
        elapsed = asyncio.run(attempt())
    finally:
        tansu.start()  # empty again (memory storage): restore the topics for later tests
        asyncio.run(ensure_topics(tansu.bootstrap, PARTITIONS))
    assert elapsed < 1.5 + 0.5
