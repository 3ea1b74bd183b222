"""The typed partition commit on a real redis-server: every section written by the Lua
decoder reads back as the Python side encoded it, a commit is all or nothing, and the
layout is checked before the first write."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import redis

from projections.value.rfm_cells import Change
from services.scaleout.redis.commit import FIXED, SCRIPT, SECTIONS, PartitionCommit, encode
from services.scaleout.redis.keys import RedisKeys, conflict_record, dead_letter_record
from services.scaleout.redis.views import RedisViewStore

TOPIC = "touchpoints"


def committed(url: str, prefix: str, commit: PartitionCommit) -> bool:
    async def main() -> bool:
        async with RedisViewStore(url, prefix) as store:
            return (await store.commit_all([commit]))[0]

    return asyncio.run(main())


def stream(r: redis.Redis, key: str) -> list[bytes]:
    return [fields[b"record"] for _, fields in r.xrange(key)]


X1 = conflict_record(TOPIC, 0, 1, "e-1", "c-1", [(("email", "a@x"), "c-9")])
X2 = conflict_record(TOPIC, 0, 2, "e-2", "c-2", [(("phone", "+1"), "c-9")])
DL = dead_letter_record(TOPIC, 0, 3, None, "undecodable")


def with_position(entry: bytes, position: int | None = None) -> bytes:
    return orjson.dumps({**orjson.loads(entry), "position": position})


# section name -> (the commit carrying only that section, what Redis must then hold)
Check = Callable[[redis.Redis, RedisKeys], Any]
CASES: dict[str, tuple[dict[str, Any], Check, Any]] = {
    "states": ({"states": {"c-1": b"s1", "c-2": b"s2"}},
               lambda r, k: [r.get(k.state("c-1")), r.get(k.state("c-2"))], [b"s1", b"s2"]),
    "documents": ({"documents": {"c-1": b"d1"}}, lambda r, k: r.get(k.view("c-1")), b"d1"),
    # entries carry their event's position (null: none known), in the stream and its position index
    "conflicts": ({"conflicts": [X1, X2]}, lambda r, k: (stream(r, k.conflicts(0)),
                                                         r.zrange(k.listing("conflicts", 0), 0, -1, withscores=True)),
                  ([with_position(X1), with_position(X2)], [(with_position(X1), 0.0), (with_position(X2), 0.0)])),
    "dead_letters": ({"dead_letters": [DL]}, lambda r, k: (stream(r, k.deadletters(0)),
                                                           r.zrange(k.listing("deadletters", 0), 0, -1)),
                     ([with_position(DL)], [with_position(DL)])),
    "timeline": ({"timeline": [("c-1", 10, "e-1", b"v1"), ("c-1", 5, "e-0", b"v0")]},
                 lambda r, k: (r.zrange(k.timeline("c-1"), 0, -1, withscores=True), r.hgetall(k.events("c-1"))),
                 ([(b"e-0", 5.0), (b"e-1", 10.0)], {b"e-0": b"v0", b"e-1": b"v1"})),
    "deadlines": ({"deadlines": {"c-1": 100, "c-2": 50, "c-3": None}},
                  lambda r, k: r.zrange(k.deadlines(TOPIC, 0), 0, -1, withscores=True), [(b"c-2", 50.0), (b"c-1", 100.0)]),
    "transitions": ({"transitions": [b"t1"]}, lambda r, k: stream(r, k.transitions(0)), [b"t1"]),
    "stages": ({"stages": {"new": 2, "prospect": -2}}, lambda r, k: r.hgetall(k.stages(0)),
               {b"new": b"2", b"prospect": b"-2"}),
    "rfm": ({"rfm": {(1, 2, 3): Change(1, 25_0000)}}, lambda r, k: r.hgetall(k.rfm(TOPIC, 0)),
            {b"1:2:3:c": b"1", b"1:2:3:v": b"250000"}),
    "triggers": ({"triggers": [("call", b"t-call"), ("email", b"t-email")]},
                 lambda r, k: (stream(r, k.triggers(0)), stream(r, k.triggers(0, "call")), stream(r, k.triggers(0, "email"))),
                 ([b"t-call", b"t-email"], [b"t-call"], [b"t-email"])),
    "figures": ({"figures": {("welcome", 1, "email", "fired"): 3}}, lambda r, k: r.hgetall(k.contact_figures(0)),
                {b"welcome|1|email|fired": b"3"}),
    "segment_members": ({"segment_members": [("vip", "c-1", 42), ("vip", "c-2", None)]},
                        lambda r, k: r.hgetall(k.segment(0, "vip")), {b"c-1": b"42"}),
    "segment_feed": ({"segment_feed": [b"f1"]}, lambda r, k: stream(r, k.segment_changes(0)), [b"f1"]),
    "changed": ({"states": {"c-1": b"s1"}}, lambda r, k: r.hgetall(k.changed(TOPIC, 0)), {b"c-1": b"5"}),
}


def test_every_section_has_a_round_trip_case() -> None:
    assert sorted(CASES) == sorted(s.name for s in SECTIONS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_section_reads_back_as_it_was_encoded(name: str, redis_url: str, redis_prefix: str) -> None:
    fields, check, expected = CASES[name]
    r, keys = redis.Redis.from_url(redis_url), RedisKeys(redis_prefix)
    if name == "segment_members":  # a member that leaves is removed
        r.hset(keys.segment(0, "vip"), "c-2", 7)
    assert committed(redis_url, redis_prefix, PartitionCommit(TOPIC, 0, 5, clock=77, **fields)) is True
    assert check(r, keys) == expected
    assert r.get(keys.position(TOPIC, 0)) == b"5" and r.get(keys.clock(TOPIC, 0)) == b"77"


def test_a_commit_at_or_behind_the_stored_position_or_off_its_base_changes_nothing(redis_url: str,
                                                                                  redis_prefix: str) -> None:
    r, keys = redis.Redis.from_url(redis_url), RedisKeys(redis_prefix)
    assert committed(redis_url, redis_prefix, PartitionCommit(TOPIC, 0, 5, states={"c-1": b"first"}))
    assert not committed(redis_url, redis_prefix, PartitionCommit(TOPIC, 0, 5, states={"c-1": b"again"}))
    assert not committed(redis_url, redis_prefix, PartitionCommit(TOPIC, 0, 9, base=3, states={"c-1": b"stale"}))
    assert committed(redis_url, redis_prefix, PartitionCommit(TOPIC, 0, 9, base=5, states={"c-1": b"next"}))
    assert r.get(keys.state("c-1")) == b"next" and r.get(keys.position(TOPIC, 0)) == b"9"


def test_a_commit_whose_layout_does_not_add_up_writes_nothing(redis_url: str, redis_prefix: str) -> None:
    r, keys = redis.Redis.from_url(redis_url), RedisKeys(redis_prefix)
    good_keys, good_args = encode(PartitionCommit(TOPIC, 0, 5, states={"c-1": b"s"}, conflicts=[X1]), keys)
    script = r.register_script(SCRIPT)
    for bad_keys, bad_args in ((good_keys, [*good_args, "conflicts"]),  # a section without its count
                               (good_keys[:-1], good_args),  # a key missing
                               (good_keys, [*good_args[:3], "nonsense", 1, "x", *good_args[3:]])):
        with pytest.raises(redis.ResponseError):
            script(keys=bad_keys, args=bad_args)
    assert r.get(keys.state("c-1")) is None and r.xlen(keys.conflicts(0)) == 0
    assert r.get(keys.position(TOPIC, 0)) is None
    assert len(good_keys) == len(FIXED) + 1  # the fixed keys and the state's


def test_every_key_of_a_commit_is_in_its_partition_s_slot_and_a_foreign_key_is_refused() -> None:
    from redis.crc import key_slot

    keys = RedisKeys("slots", 12)
    everything = {name: fields for name, (fields, _, _) in CASES.items()}
    commit = PartitionCommit(TOPIC, 5, 9, clock=1, **{k: v for f in everything.values() for k, v in f.items()})
    names, _ = encode(commit, keys)
    assert len({key_slot(n.encode()) for n in names}) == 1, names
    assert key_slot(keys.position(TOPIC, 5).encode()) != key_slot(keys.position(TOPIC, 6).encode())
    with pytest.raises(ValueError, match="slot"):  # a key built for another partition never enters the script
        encode(PartitionCommit(TOPIC, 5, 9, states={"c-1": b"s"}), _OtherSlot("slots", 12))


class _OtherSlot(RedisKeys):
    """Keys whose states land in another partition's slot: what ``encode`` must refuse."""

    def state(self, customer_id: str, partition: int | None = None) -> str:
        return super().state(customer_id, (partition or 0) + 1)
