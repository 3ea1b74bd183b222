"""Lifecycle stages in the scale-out runtime, on a real Tansu broker and a real Redis:
clock ticks go to every partition, each worker visits only its partition's customers
whose deadline passed, transitions are published on the lifecycle topic under their
deterministic ids and kept in Redis with the stage counts, and a replay of the topic
(ticks included) gives the same views byte for byte."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import orjson

from projections.codec import to_dict
from projections.touchpoints import CustomerRef
from services.contracts import decode_record
from services.scaleout.kafka.topics import LIFECYCLE_TOPIC
from services.scaleout.platform import KafkaPlatform
from services.settings import Settings
from tests.integration.test_view_worker import (  # noqa: F401 - fixtures
    PARTITIONS,
    all_folded,
    assert_replay_identical,
    broker,
    read_topic,
    running_worker,
    settings,
)
from tests.support.redis_server import unique_prefix
from tests.support.touchpoints import call, purchase

BASE = datetime(2023, 1, 2, 9, 0, tzinfo=UTC)


def test_ticks_move_only_the_customers_due_and_every_transition_is_published_once(settings: Settings) -> None:
    tag = unique_prefix()
    buyers = [f"{tag}-buyer-{k}" for k in range(30)]
    prospects = [f"{tag}-prospect-{k}" for k in range(10)]

    async def scenario() -> None:
        platform = KafkaPlatform(settings)
        await platform.start()
        try:
            async with running_worker(settings) as member:
                docs = []
                for k, who in enumerate(buyers):
                    ref = CustomerRef(customer_id=who)
                    docs += [to_dict(purchase(f"{who}-p1", BASE + timedelta(days=k % 5), ref=ref)),
                             to_dict(purchase(f"{who}-p2", BASE + timedelta(days=20 + k % 5), ref=ref))]
                docs += [to_dict(call(f"{who}-c", BASE, ref=CustomerRef(customer_id=who))) for who in prospects]
                await platform.append(docs)
                quiet = await platform.append_tick(BASE + timedelta(days=30))  # nobody due yet
                first = await platform.append_tick(BASE + timedelta(days=500))
                again = await platform.append_tick(BASE + timedelta(days=500))  # the same instant: stored once
                assert again == first and first > quiet
                assert (await platform.caught_up(first, timeout=20)).reached
                await all_folded(settings)
                assert member.worker.status()["stalled"] is None

                for who in buyers:
                    life = orjson.loads(await platform.store.document(who) or b"{}")["lifecycle"]
                    assert life["stage"] == "lost", (who, life)
                    assert [t["to_stage"] for t in reversed(life["history"])] == ["new", "active", "declining", "lost"]
                assert await platform.store.stage_counts() == {"lost": len(buyers), "prospect": len(prospects)}
                page = await platform.transitions(None, 1000, None)
                assert len(page.transitions) == 4 * len(buyers)
                assert (await platform.transitions(page.next_cursor, 10, None)).transitions == []
                mine = await platform.transitions(None, 1000, buyers[0])
                assert [t["customer_id"] for t in mine.transitions] == [buyers[0]] * 4
                for p in range(PARTITIONS):  # lost customers have no deadline left
                    assert await platform.store.due("touchstream.touchpoints.v1", p, 10**18, 10) == []

            # the lifecycle topic: each transition once, Avro, ce_id = its deterministic id, ce_time its instant
            records = await read_topic(settings.kafka_bootstrap, LIFECYCLE_TOPIC, 4 * len(buyers))
            assert len(records) == 4 * len(buyers)
            ids = set()
            for record in records:
                family, document = decode_record(record.value)
                assert family == "lifecycle/stage_changed"
                assert dict(record.headers)["ce_id"] == document["transition_id"].encode()
                assert dict(record.headers)["ce_time"] == document["at"].encode()
                assert record.key == document["customer_id"].encode()
                ids.add(document["transition_id"])
            assert ids == {t["transition_id"] for t in page.transitions}
            await assert_replay_identical(settings)
        finally:
            await platform.close()

    asyncio.run(scenario())
