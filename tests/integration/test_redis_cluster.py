"""The scale-out store on a Redis Cluster node: every call it makes stays within one hash
slot, so a one-node cluster owning every slot (which refuses any cross-slot script,
MULTI/EXEC or multi-key command, as every cluster node does) takes all of them. The
scenario suite runs the whole scale-out runtime on such a node too (tests/support/kafka_runtime.py)."""

from __future__ import annotations

import asyncio
import random
import socket
from typing import Any

import orjson
import pytest
import redis

from projections.value.rfm_cells import Change
from services.scaleout.redis.commit import PartitionCommit
from services.scaleout.redis.keys import conflict_record, dead_letter_record
from services.scaleout.redis.views import RedisViewStore
from tests.support.redis_server import RedisServer

TOPIC = "touchpoints"
PARTITIONS = 4


def _high_free_port() -> int:
    """A free port above 55535, where the default cluster bus port (port + 10000) cannot be."""
    for port in random.Random().sample(range(55_536, 61_000), 200):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port above 55535")


@pytest.fixture(scope="module")
def cluster() -> Any:
    server = RedisServer(cluster=True, port=_high_free_port())  # the cluster bus gets a port of its own
    with server:
        yield server


def test_the_node_refuses_a_cross_slot_call(cluster: RedisServer) -> None:
    with pytest.raises(redis.ResponseError, match="same slot"):
        redis.Redis.from_url(cluster.url).mget("a", "b")


def test_every_call_of_the_store_runs_on_a_cluster_node(cluster: RedisServer) -> None:
    customers = [f"c-{n}" for n in range(12)]

    async def body(store: RedisViewStore) -> dict[str, Any]:
        keys = store.keys
        acked = await store.acknowledge(TOPIC, [(f"e-{c}", keys.partition_of(c), n) for n, c in enumerate(customers)])
        claims = await store.claim_all([(("email", f"{c}@x"), c) for c in customers])
        batches = []
        for p in range(PARTITIONS):
            mine = [c for c in customers if keys.partition_of(c) == p]
            batches.append(PartitionCommit(
                TOPIC, p, 100, clock=7, states={c: b"s-" + c.encode() for c in mine},
                documents={c: b"d-" + c.encode() for c in mine},
                links=[("phone", f"+3360000000{n}", c) for n, c in enumerate(mine)],
                conflicts=[conflict_record(TOPIC, p, 1, f"e-{c}", c, [(("email", "z@x"), "c-0")]) for c in mine],
                dead_letters=[dead_letter_record(TOPIC, p, 2, None, "undecodable")],
                timeline=[(c, 5, f"e-{c}", b"record") for c in mine], deadlines={c: 9 for c in mine},
                transitions=[b'{"customer_id": "x"}'], stages={"new": len(mine)}, rfm={(1, 1, 1): Change(len(mine), 5)},
                triggers=[("email", orjson.dumps({"customer_id": c})) for c in mine],
                figures={("welcome", 1, "email", "fired"): len(mine)},
                segment_members=[("vip", c, 3) for c in mine], segment_feed=[b'{"segment": "vip"}']))
        applied = await store.commit_all(batches)
        await store.store_delivery_dead_letter("t-1", "email", 1_000, b'{"trigger_id": "t-1"}')
        delivered = await store.count_delivered("welcome", 1, "email", "t-9")
        return {
            "acked": acked, "claims": claims, "applied": applied,
            "states": await store.states(customers), "document": await store.document("c-3"),
            "owners": await store.owners([("phone", "+33600000000")]),
            "watermark": await store.watermark(TOPIC, PARTITIONS), "clock": await store.latest_clock(TOPIC, PARTITIONS),
            "triggers": await store.triggers(channel="email", count=100),
            "transitions": await store.transitions(count=100), "stages": await store.stage_counts(),
            "figures": await store.contact_figures(), "rfm": await store.rfm_cells(TOPIC, PARTITIONS),
            "conflicts": await store.listing("conflicts", 0, 100),
            "delivered": delivered,
            "delivery_dead_letters": await store.delivery_dead_letters("email", 10),
            "timeline": await store.timeline_page("c-3", limit=5, before=None),
            "every_state": [c async for c, _ in store.every_state()],
        }

    async def main() -> dict[str, Any]:
        async with RedisViewStore(cluster.url, "cluster", partitions=PARTITIONS) as store:
            return await body(store)

    seen = asyncio.run(main())
    assert [duplicate for _, duplicate in seen["acked"]] == [False] * len(customers)
    assert seen["claims"] == customers and seen["applied"] == [True] * PARTITIONS
    assert seen["states"] == {c: b"s-" + c.encode() for c in customers} and seen["document"] == b"d-c-3"
    assert len(seen["owners"]) == 1
    assert seen["watermark"] == (len(customers), len(customers)) and seen["clock"] == 7
    assert len(seen["triggers"]) == len(customers) and len(seen["transitions"]) == PARTITIONS
    assert seen["stages"] == {"new": len(customers)}
    assert seen["figures"][("welcome", 1, "email", "fired")] == len(customers)
    assert seen["figures"][("welcome", 1, "email", "delivered")] == 1 and seen["delivered"] is True
    assert seen["rfm"] == {(1, 1, 1): Change(len(customers), 5 * PARTITIONS)}
    assert [c["position"] for c in seen["conflicts"]] == list(range(1, len(customers) + 1))
    assert seen["delivery_dead_letters"] == [b'{"trigger_id": "t-1"}']
    assert seen["timeline"] == [(5, "e-c-3", b"record")] and sorted(seen["every_state"]) == sorted(customers)
