"""With a schema registry configured, records carry its ids and a fresh worker reads them.

Real Tansu broker, real Redis, a registry on loopback speaking the Confluent REST subset
(tests/support/schema_registry.py), the API side in-process and ``touchstream worker``
as its own process, so the worker knows no id until it asks the registry.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from projections.codec import to_dict
from projections.touchpoints import TOUCHPOINT_TYPES, CustomerRef
from services.contracts import default_registry
from services.contracts.confluent import framed_schema_id
from services.scaleout.kafka.records import cloudevents_headers
from services.scaleout.kafka.topics import TOUCHPOINTS_TOPIC
from services.scaleout.platform import KafkaPlatform
from services.scaleout.redis.views import RedisViewStore
from services.scaleout.worker.replay import verify
from services.settings import Settings
from tests.support.schema_registry import SchemaRegistryServer
from tests.support.server import REPO_ROOT
from tests.support.tansu import TansuBroker
from tests.support.touchpoints import at, call
from tools.bench.server import free_port

pytestmark = pytest.mark.timeout(180)
PARTITIONS = 2


@pytest.fixture
def registry() -> Iterator[SchemaRegistryServer]:
    with SchemaRegistryServer() as server:
        yield server


def _documents(tag: str, n: int) -> list[dict]:  # type: ignore[type-arg]
    return [{**to_dict(call(f"{tag}-{i}", at(hours=i), ref=CustomerRef(emails=(f"{tag}.{i % 3}@example.com",)))),
             "received_at": to_dict(call("x", at(hours=i)))["received_at"]} for i in range(n)]


async def _raw_values(bootstrap: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                                fetch_max_wait_ms=10)
    await consumer.start()
    try:
        partitions = [TopicPartition(TOUCHPOINTS_TOPIC, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        values: list[bytes] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                values += [r.value for r in records]
            ends = [consumer.highwater(tp) for tp in partitions]
            positions = [await consumer.position(tp) for tp in partitions]
            if None not in ends and all(p >= e for p, e in zip(positions, ends, strict=True)):
                break
        return values
    finally:
        await consumer.stop()


def test_records_carry_registry_ids_and_a_fresh_worker_learns_them(
    registry: SchemaRegistryServer, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    tag = redis_prefix.replace(":", "-")
    with TansuBroker() as broker:
        settings = Settings(runtime="kafka", kafka_bootstrap=broker.bootstrap, redis_url=redis_url,
                            redis_prefix=redis_prefix, kafka_partitions=PARTITIONS, kafka_fetch_max_wait_ms=10,
                            kafka_session_timeout_seconds=6, kafka_heartbeat_seconds=0.5,
                            schema_registry_url=registry.url, worker_group=f"g-{tag}")

        async def ingest() -> list[bytes]:
            platform = KafkaPlatform(settings)
            await platform.start()
            try:
                answers = await platform.append(_documents(tag, 30))
                assert [d for _, d in answers] == [False] * 30
                # a record framed with an id the registry never gave
                customer = f"cus-{tag}-unknown"
                producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
                await producer.start()
                try:
                    event = call(f"{tag}-unknown", at(), ref=CustomerRef(customer_id=customer))
                    value = b"\x00" + (9999).to_bytes(4, "big") + default_registry().encode(event)[10:]
                    await producer.send_and_wait(TOUCHPOINTS_TOPIC, value=value, key=customer.encode(),
                                                 headers=cloudevents_headers(to_dict(event)))
                finally:
                    await producer.stop()
            finally:
                await platform.close()
            return await _raw_values(broker.bootstrap)

        values = asyncio.run(ingest())
        assert len(values) == 31
        ids = {framed_schema_id(v) for v in values}
        assert None not in ids, "every record is framed with a registry id"
        assert ids - {9999} == set(registry.subjects["touchstream.touchpoint.Call"]), "the calls' subject and id"
        assert len(registry.subjects) == len(TOUCHPOINT_TYPES), registry.subjects  # one per touchpoint contract
        assert all(s.startswith("touchstream.touchpoint.") for s in registry.subjects)

        port = free_port()
        environment = {**os.environ, "TOUCHSTREAM_RUNTIME": "kafka", "TOUCHSTREAM_KAFKA_BOOTSTRAP": broker.bootstrap,
                       "TOUCHSTREAM_REDIS_URL": redis_url, "TOUCHSTREAM_REDIS_PREFIX": redis_prefix,
                       "TOUCHSTREAM_KAFKA_PARTITIONS": str(PARTITIONS), "TOUCHSTREAM_KAFKA_FETCH_MAX_WAIT_MS": "10",
                       "TOUCHSTREAM_KAFKA_SESSION_TIMEOUT_SECONDS": "6", "TOUCHSTREAM_KAFKA_HEARTBEAT_SECONDS": "0.5",
                       "TOUCHSTREAM_SCHEMA_REGISTRY_URL": registry.url, "TOUCHSTREAM_WORKER_GROUP": f"g-{tag}",
                       "TOUCHSTREAM_WORKER_WEB_PORT": str(port), "TOUCHSTREAM_DATA_DIR": str(tmp_path)}
        log = (tmp_path / "worker.log").open("wb")
        worker = subprocess.Popen([sys.executable, "-m", "services.cli", "worker"], cwd=REPO_ROOT, env=environment,
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            report: dict = {}  # type: ignore[type-arg]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
                report = asyncio.run(verify(settings))
                assert report["identical"] is True, report  # at its snapshot, even while the worker folds
                if not report["lag"]:
                    break  # ... and the worker has folded the whole topic
                time.sleep(0.3)
            assert not report["lag"], report
        finally:
            worker.terminate()
            worker.wait(timeout=30)
            log.close()

        # the worker asked the registry for the ids it met, and dead-lettered the unknown one
        asked = {path for method, path in registry.requests if method == "GET"}
        assert "/schemas/ids/9999" in asked and len(asked) >= 2, registry.requests

        async def read() -> tuple[list[dict], str | None]:  # type: ignore[type-arg]
            async with RedisViewStore(redis_url, redis_prefix, partitions=PARTITIONS) as store:
                dead = [orjson.loads(r) for r in await store.records("deadletters")]
                owners = await store.owners([("email", f"{tag}.0@example.com")])
                owner = owners.get(("email", f"{tag}.0@example.com"))
                document = await store.document(owner) if owner else None
            return dead, document

        dead, document = asyncio.run(read())
        assert [d["reason"].split(":")[0] for d in dead] == ["undecodable"] and "9999" in dead[0]["reason"]
        assert report["records_dead"] == 1 and report["customers"] == 3
        assert document is not None and orjson.loads(document)["touchpoints"] == 10
