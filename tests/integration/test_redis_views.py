"""The scale-out view store on a real redis-server: fenced atomic commits, identity
claims, positions per partition, failures reported as ViewStoreUnavailable."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import orjson
import pytest
import redis

from projections.touchpoints import CustomerRef
from projections.view.document import from_state, to_document, to_state
from projections.view.fold import evolve, initial_view
from services.scaleout.redis.commit import PartitionCommit
from services.scaleout.redis.keys import RedisKeys, conflict_record, dead_letter_record
from services.scaleout.redis.views import RedisViewStore, ViewStoreUnavailable
from tests.support.redis_server import RedisServer, free_port
from tests.support.touchpoints import at, call, purchase

TOPIC = "touchpoints"
CONFLICT = conflict_record(TOPIC, 0, 1, "e-1", "c-1", [(("email", "a@x"), "c-0")])
DEAD = dead_letter_record(TOPIC, 0, 2, None, "undecodable")


def run(url: str, prefix: str, body: Callable[[RedisViewStore], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with RedisViewStore(url, prefix) as store:
            return await body(store)

    return asyncio.run(main())


def folded(customer_id: str) -> tuple[bytes, bytes]:
    """(state, document) bytes of a real view, as the worker would write them."""
    ref = CustomerRef(customer_id=customer_id, emails=(f"{customer_id}@example.com",))
    view = initial_view(customer_id)
    for event in (purchase(f"{customer_id}-p1", at(0), ref=ref), call(f"{customer_id}-c1", at(1), ref=ref)):
        view = evolve(view, event)
    return orjson.dumps(to_state(view)), orjson.dumps(to_document(view))


def raw(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5)


def test_a_commit_writes_states_documents_links_and_the_position_together(redis_url: str, redis_prefix: str) -> None:
    state, document = folded("c-1")
    conflict = conflict_record(TOPIC, 0, 7, "e-7", "c-1", [(("email", "ana@example.com"), "c-2")])
    dead = dead_letter_record(TOPIC, 0, 6, None, "undecodable: garbage")

    async def body(store: RedisViewStore) -> tuple[Any, ...]:
        applied = await store.commit(TOPIC, 0, 7, {"c-1": state}, {"c-1": document},
                                     [("email", "c-1@example.com", "c-1"), ("phone", "+33600000001", "c-1")],
                                     [conflict], [dead])
        return applied, await store.records("conflicts"), await store.records("deadletters")

    applied, conflicts, dead_letters = run(redis_url, redis_prefix, body)
    assert applied is True
    r, p, k = raw(redis_url), redis_prefix, RedisKeys(redis_prefix)
    assert r.get(k.state("c-1", 0)) == state
    assert r.get(k.view("c-1", 0)) == document
    assert r.get(k.identifier("email", "c-1@example.com")) == b"c-1"
    assert r.get(k.identifier("phone", "+33600000001")) == b"c-1"
    assert r.get(k.position(TOPIC, 0)) == b"7"
    assert r.hgetall(k.changed(TOPIC, 0)) == {b"c-1": b"7"}  # the batch that wrote the state (replay)
    positioned = [{**orjson.loads(e), "position": None} for e in (conflict, dead)]  # never through ingest here
    assert [orjson.loads(e) for e in conflicts + dead_letters] == positioned
    assert b"ana@example.com" not in conflicts[0]  # kinds and owners only, no identifier values
    assert orjson.loads(conflicts[0])["conflicts"] == [{"kind": "email", "owner": "c-2"}]
    assert sorted(name.decode() for name in r.scan_iter(match=f"{p}:*")) == sorted(
        [k.state("c-1", 0), k.view("c-1", 0), k.identifier("email", "c-1@example.com"),
         k.identifier("phone", "+33600000001"), k.position(TOPIC, 0), k.changed(TOPIC, 0), k.conflicts(0),
         k.deadletters(0), k.listing("conflicts", 0), k.listing("deadletters", 0)]
    )


def test_a_commit_not_beyond_the_stored_offset_changes_nothing_and_returns_false(
    redis_url: str, redis_prefix: str
) -> None:
    async def body(store: RedisViewStore) -> list[bool]:
        first = await store.commit(TOPIC, 3, 10, {"c-1": b"s10"}, {"c-1": b"d10"}, [("email", "a@x", "c-1")])
        same = await store.commit(TOPIC, 3, 10, {"c-1": b"again"}, {"c-1": b"again"}, [("email", "b@x", "c-1")],
                                  [CONFLICT], [DEAD])
        older = await store.commit(TOPIC, 3, 4, {"c-1": b"old", "c-2": b"old"}, {"c-2": b"old"},
                                   [("email", "c@x", "c-2")], [CONFLICT])
        return [first, same, older]

    assert run(redis_url, redis_prefix, body) == [True, False, False]
    r, k = raw(redis_url), RedisKeys(redis_prefix)
    assert r.get(k.state("c-1", 3)) == b"s10" and r.get(k.view("c-1", 3)) == b"d10"
    assert r.get(k.state("c-2", 3)) is None and r.get(k.view("c-2", 3)) is None
    # a fenced batch's links were written before its script: the next fold writes the same ones
    assert [r.get(k.identifier("email", e)) for e in ("a@x", "b@x", "c@x")] == [b"c-1", b"c-1", b"c-2"]
    assert r.exists(k.conflicts(3), k.deadletters(3)) == 0
    assert r.get(k.position(TOPIC, 3)) == b"10"
    assert r.hgetall(k.changed(TOPIC, 3)) == {b"c-1": b"10"}


def test_each_state_written_records_the_offset_of_the_batch_that_wrote_it(redis_url: str, redis_prefix: str) -> None:
    """What ``touchstream replay`` reads with a state to tell a state written after its
    snapshot from a wrong one: per partition, customer -> the last offset of the batch."""
    async def body(store: RedisViewStore) -> list[bool]:
        return [await store.commit(TOPIC, 1, 5, {"c-1": b"s5", "c-2": b"s5"}, {}),
                await store.commit(TOPIC, 1, 9, {"c-2": b"s9"}, {}, base=5),
                await store.commit(TOPIC, 1, 12, {}, {}, base=9),  # ticks that changed nobody
                await store.commit(TOPIC, 1, 14, {"c-1": b"fenced"}, {}, base=5)]

    assert run(redis_url, redis_prefix, body) == [True, True, True, False]
    r, k = raw(redis_url), RedisKeys(redis_prefix)
    assert r.hgetall(k.changed(TOPIC, 1)) == {b"c-1": b"5", b"c-2": b"9"}
    assert r.get(k.position(TOPIC, 1)) == b"12"


def test_states_owners_and_document_read_back_what_was_committed(redis_url: str, redis_prefix: str) -> None:
    states, documents = {}, {}
    for c in ("c-1", "c-2"):
        states[c], documents[c] = folded(c)

    async def body(store: RedisViewStore) -> tuple[Any, ...]:
        assert await store.commit(TOPIC, 0, 0, states, documents,
                                  [("email", "c-1@example.com", "c-1"), ("external_id", "crm:42", "c-2")])
        return (
            await store.states(["c-1", "c-2", "c-unknown", "c-1"]),
            await store.owners([("email", "c-1@example.com"), ("external_id", "crm:42"), ("phone", "+1")]),
            await store.document("c-2"),
            await store.document("c-unknown"),
            await store.states([]),
        )

    got_states, owners, document, missing, empty = run(redis_url, redis_prefix, body)
    assert got_states == states
    assert from_state(orjson.loads(got_states["c-1"])).customer_id == "c-1"
    assert owners == {("email", "c-1@example.com"): "c-1", ("external_id", "crm:42"): "c-2"}
    assert document == documents["c-2"] and missing is None and empty == {}


def test_links_in_a_commit_never_take_an_identifier_already_owned(redis_url: str, redis_prefix: str) -> None:
    async def body(store: RedisViewStore) -> dict[Any, str]:
        assert await store.claim(("email", "ana@example.com"), "c-1") == "c-1"
        assert await store.commit(TOPIC, 0, 1, {}, {}, [("email", "ana@example.com", "c-2"), ("phone", "+2", "c-2")])
        return await store.owners([("email", "ana@example.com"), ("phone", "+2")])

    assert run(redis_url, redis_prefix, body) == {("email", "ana@example.com"): "c-1", ("phone", "+2"): "c-2"}


def test_claim_is_first_writer_wins_under_concurrency(redis_url: str, redis_prefix: str) -> None:
    async def body(store: RedisViewStore) -> tuple[list[str], dict[Any, str]]:
        answers = await asyncio.gather(*(store.claim(("email", "shared@example.com"), f"c-{i}") for i in range(20)))
        return list(answers), await store.owners([("email", "shared@example.com")])

    answers, owners = run(redis_url, redis_prefix, body)
    owner = owners[("email", "shared@example.com")]
    assert answers == [owner] * 20
    assert owner in {f"c-{i}" for i in range(20)}


def test_position_is_per_topic_and_partition(redis_url: str, redis_prefix: str) -> None:
    async def body(store: RedisViewStore) -> list[Any]:
        assert await store.position(TOPIC, 0) == -1
        results = [
            await store.commit(TOPIC, 0, 5, {}, {}),
            await store.commit(TOPIC, 1, 2, {}, {}),
            await store.commit("other:topic", 0, 9, {}, {}),
            await store.commit(TOPIC, 1, 3, {}, {}),  # partition 1 moves on, 0 stays at 5
        ]
        return results + [await store.position(TOPIC, 0), await store.position(TOPIC, 1),
                          await store.position("other:topic", 0), await store.position(TOPIC, 2)]

    assert run(redis_url, redis_prefix, body) == [True, True, True, True, 5, 3, 9, -1]


def test_a_first_commit_at_offset_zero_applies(redis_url: str, redis_prefix: str) -> None:
    async def body(store: RedisViewStore) -> tuple[bool, int]:
        return await store.commit(TOPIC, 0, 0, {"c-1": b"s"}, {}), await store.position(TOPIC, 0)

    assert run(redis_url, redis_prefix, body) == (True, 0)


def test_documents_written_are_byte_for_byte_what_was_passed(redis_url: str, redis_prefix: str) -> None:
    _, real = folded("c-1")
    odd = bytes(range(256)) + "é ✓ \u2028".encode() + b"\x00\r\n"  # not UTF-8, NUL, CR LF, all bytes

    async def body(store: RedisViewStore) -> list[bytes | None]:
        assert await store.commit(TOPIC, 0, 1, {"c-odd": odd}, {"c-1": real, "c-odd": odd, "c-empty": b""})
        return [await store.document("c-1"), await store.document("c-odd"), await store.document("c-empty"),
                (await store.states(["c-odd"]))["c-odd"]]

    assert run(redis_url, redis_prefix, body) == [real, odd, b"", odd]


def test_with_the_server_unreachable_every_method_raises_view_store_unavailable_promptly() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    calls: dict[str, Callable[[RedisViewStore], Awaitable[Any]]] = {
        "states": lambda s: s.states(["c-1"]),
        "document": lambda s: s.document("c-1"),
        "owners": lambda s: s.owners([("email", "a@x")]),
        "claim": lambda s: s.claim(("email", "a@x"), "c-1"),
        "position": lambda s: s.position(TOPIC, 0),
        "commit": lambda s: s.commit(TOPIC, 0, 1, {"c-1": b"s"}, {"c-1": b"d"}),
        "records": lambda s: s.records("conflicts"),
    }

    async def body(store: RedisViewStore) -> dict[str, tuple[str, float]]:
        outcomes = {}
        for name, call_ in calls.items():
            started = time.monotonic()
            try:
                await call_(store)
                outcomes[name] = ("no error", time.monotonic() - started)
            except ViewStoreUnavailable as error:
                assert "127.0.0.1" in str(error)
                outcomes[name] = ("unavailable", time.monotonic() - started)
        return outcomes

    outcomes = run(url, "unreachable", body)
    assert {n: o for n, (o, _) in outcomes.items()} == {n: "unavailable" for n in calls}
    assert max(t for _, t in outcomes.values()) < 0.5, outcomes  # refused at once: no retry loop


def test_a_server_that_stops_answering_times_out_as_unavailable() -> None:
    with socket.socket() as silent:  # accepts connections (backlog) but never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"

        async def body() -> float:
            async with RedisViewStore(url, "silent", timeout=0.3) as store:
                started = time.monotonic()
                with pytest.raises(ViewStoreUnavailable):
                    await store.commit(TOPIC, 0, 1, {}, {})
                return time.monotonic() - started

        assert asyncio.run(body()) < 2.0


def test_a_commit_still_applies_after_the_server_forgot_its_scripts(redis_url: str, redis_prefix: str) -> None:
    async def body(store: RedisViewStore) -> tuple[bool, bool, int]:
        first = await store.commit(TOPIC, 0, 1, {}, {})
        raw(redis_url).script_flush()
        return first, await store.commit(TOPIC, 0, 2, {"c-1": b"s"}, {}), await store.position(TOPIC, 0)

    assert run(redis_url, redis_prefix, body) == (True, True, 2)


def test_the_store_reconnects_by_itself_after_redis_restarts() -> None:
    with RedisServer() as server:

        async def body() -> list[Any]:
            async with RedisViewStore(server.url, "restart") as store:
                seen: list[Any] = [await store.commit(TOPIC, 0, 4, {"c-1": b"s"}, {"c-1": b"d"})]
                server.stop()
                for call_ in (lambda: store.position(TOPIC, 0), lambda: store.commit(TOPIC, 0, 5, {}, {})):
                    started = time.monotonic()
                    with pytest.raises(ViewStoreUnavailable):
                        await call_()
                    assert time.monotonic() - started < 0.5  # no retry loop with back-off
                server.start()  # same port, empty: no persistence in tests
                seen += [await store.position(TOPIC, 0), await store.commit(TOPIC, 0, 5, {}, {}),
                         await store.claim(("email", "a@x"), "c-1"), await store.position(TOPIC, 0)]
                return seen

        assert asyncio.run(body()) == [True, -1, True, "c-1", 5]


def test_after_a_restart_reads_retry_once_but_a_commit_on_a_dead_connection_is_not_retried() -> None:
    with RedisServer() as server:

        async def body() -> list[Any]:
            async with RedisViewStore(server.url, "stale") as store:
                assert await store.commit(TOPIC, 0, 4, {}, {}) and await store.position(TOPIC, 0) == 4
                server.stop()
                server.start()  # both pooled connections are now dead, unnoticed
                seen: list[Any] = [await store.position(TOPIC, 0)]  # read: reconnects within the call
                try:  # commit: outcome unknown to the client, so it reports instead of retrying
                    seen.append(await store.commit(TOPIC, 0, 7, {}, {}))
                except ViewStoreUnavailable:
                    seen.append("unavailable")
                seen += [await store.commit(TOPIC, 0, 7, {}, {}), await store.position(TOPIC, 0)]
                return seen

        assert asyncio.run(body()) == [-1, "unavailable", True, 7]


def test_commit_all_fences_each_partition_on_its_own_in_one_round_trip(redis_url: str, redis_prefix: str) -> None:
    async def body(store: RedisViewStore) -> list[list[bool]]:
        first = await store.commit_all([PartitionCommit(TOPIC, 0, 5, states={"c-1": b"s5"}, documents={"c-1": b"d5"}),
                                        PartitionCommit(TOPIC, 1, 2, states={"c-2": b"s2"}, documents={"c-2": b"d2"})])
        await store._writer.script_flush()  # a restarted Redis forgot the script: reloaded
        second = await store.commit_all([
            PartitionCommit(TOPIC, 0, 5, states={"c-1": b"stale"}, documents={"c-1": b"stale"}),
            PartitionCommit(TOPIC, 1, 3, states={"c-2": b"s3"}, documents={"c-2": b"d3"})])
        return [first, second]

    assert run(redis_url, redis_prefix, body) == [[True, True], [False, True]]
    r, k = raw(redis_url), RedisKeys(redis_prefix)
    assert (r.get(k.state("c-1", 0)), r.get(k.position(TOPIC, 0))) == (b"s5", b"5")
    assert (r.get(k.state("c-2", 1)), r.get(k.position(TOPIC, 1))) == (b"s3", b"3")


def test_positions_follow_acknowledgements_and_the_watermark_waits_for_every_partition(
    redis_url: str, redis_prefix: str
) -> None:
    async def body(store: RedisViewStore) -> list[Any]:
        seen = []
        # three events acknowledged: two on partition 0 (offsets 10, 11), one on 1 (offset 4)
        seen.append(await store.acknowledge(TOPIC, [("e-1", 0, 10), ("e-2", 1, 4), ("e-3", 0, 11)]))
        seen.append(await store.acknowledge(TOPIC, [("e-2", 1, 5)]))  # a second copy of e-2
        seen.append(await store.event_positions(["e-1", "e-2", "e-3", "e-9"]))
        seen.append(await store.watermark(TOPIC, 2))  # nothing folded yet
        await store.commit(TOPIC, 0, 11, {}, {})
        seen.append(await store.watermark(TOPIC, 2))  # partition 1 still holds position 2 back
        await store.commit(TOPIC, 1, 4, {}, {})
        seen.append(await store.watermark(TOPIC, 2))  # every acknowledged event is folded
        return seen

    acked, again, positions, before, partly, after = run(redis_url, redis_prefix, body)
    assert acked == [(1, False), (2, False), (3, False)]
    assert again == [(2, True)]  # answered with the first copy's position
    assert positions == {"e-1": 1, "e-2": 2, "e-3": 3}
    assert before == (3, 0) and partly == (3, 1) and after == (3, 3)
    r, k = raw(redis_url), RedisKeys(redis_prefix)
    assert r.zcard(k.acks(TOPIC, 0)) == 0 and r.zcard(k.acks(TOPIC, 1)) == 0  # folded entries trimmed


def test_a_timeline_page_is_newest_first_and_a_cursor_continues_after_ties(redis_url: str, redis_prefix: str) -> None:
    entries = [("c-1", 100, "e-a", b"A"), ("c-1", 200, "e-b", b"B"), ("c-1", 200, "e-c", b"C"),
               ("c-1", 300, "e-d", b"D"), ("c-2", 250, "e-x", b"X")]

    async def body(store: RedisViewStore) -> list[Any]:
        await store.commit(TOPIC, 0, 1, {}, {}, timeline=entries)
        first = await store.timeline_page("c-1", limit=2, before=None)
        rest = await store.timeline_page("c-1", limit=10, before=first[-1][:2])
        return [first, rest]

    first, rest = run(redis_url, redis_prefix, body)
    assert first == [(300, "e-d", b"D"), (200, "e-c", b"C")]
    assert rest == [(200, "e-b", b"B"), (100, "e-a", b"A")]


def test_a_batch_s_identity_claims_apply_all_or_none(redis_url: str, redis_prefix: str) -> None:
    async def body(store: RedisViewStore) -> list[Any]:
        first = await store.claim_all([(("email", "x@a.example"), "c-x")])
        # c-e wants two identifiers, one of them already the other customer's: nothing written
        refused = await store.claim_all([(("email", "x@a.example"), "c-e"), (("phone", "+33600000009"), "c-e")])
        granted = await store.claim_all([(("email", "x@a.example"), "c-x"), (("phone", "+33600000009"), "c-x")])
        return [first, refused, granted]

    first, refused, granted = run(redis_url, redis_prefix, body)
    assert first == ["c-x"] and refused == ["c-x", None] and granted == ["c-x", "c-x"]
    assert raw(redis_url).get(RedisKeys(redis_prefix).identifier("phone", "+33600000009")) == b"c-x"


def test_a_batch_folded_on_a_position_that_moved_on_is_refused_even_if_it_reaches_further(
    redis_url: str, redis_prefix: str
) -> None:
    async def body(store: RedisViewStore) -> list[bool]:
        await store.commit(TOPIC, 0, 9, {"c-1": b"w0"}, {}, base=-1)  # the first batch: nothing before it
        # two workers both folded on position 9 after a rebalance; the first commit wins
        first = await store.commit(TOPIC, 0, 15, {"c-1": b"w1"}, {}, base=9, dead_letters=[DEAD])
        second = await store.commit(TOPIC, 0, 20, {"c-1": b"w2"}, {}, base=9, dead_letters=[DEAD])
        after = await store.commit(TOPIC, 0, 20, {"c-1": b"w2b"}, {}, base=15)
        return [first, second, after]

    assert run(redis_url, redis_prefix, body) == [True, False, True]
    r, k = raw(redis_url), RedisKeys(redis_prefix)
    assert r.get(k.state("c-1", 0)) == b"w2b" and r.xlen(k.deadletters(0)) == 1  # never appended twice


def test_the_value_scans_read_purchase_days_and_spend_per_currency_from_the_stored_states(
        redis_url: str, redis_prefix: str) -> None:
    ref = CustomerRef(customer_id="c-v")
    view = initial_view("c-v")
    for event in (purchase("v1", at(0), "10.00", ref=ref), purchase("v2", at(0, hours=3), "5.00", ref=ref),
                  purchase("v3", at(4), "7.50", "USD", ref=ref)):
        view = evolve(view, event)
    euros = initial_view("c-w")
    for event in (purchase("w1", at(0), "10.00", ref=CustomerRef(customer_id="c-w")),
                  purchase("w2", at(3), "20.00", ref=CustomerRef(customer_id="c-w")),
                  purchase("w3", at(3, hours=2), "5.00", ref=CustomerRef(customer_id="c-w"))):
        euros = evolve(euros, event)
    states = {"c-v": orjson.dumps(to_state(view)), "c-1": folded("c-1")[0], "c-w": orjson.dumps(to_state(euros))}

    async def body(store: RedisViewStore) -> tuple[Any, ...]:
        assert await store.commit(TOPIC, 0, 0, states, {}, [])
        return await store.purchase_histories("EUR"), await store.purchases_by_currency()

    histories, currencies = run(redis_url, redis_prefix, body)
    # two purchase days, one of them in dollars: no mean repeat-purchase value in euros
    day = 86_400_000_000  # first and last purchase are read as their days
    assert (view.first_purchase_at // day * day, view.last_purchase_at // day * day, 2, None) in histories
    assert (euros.first_purchase_at // day * day, euros.last_purchase_at // day * day, 2, 25.0) in histories
    assert len(histories) == 3  # (35 − 10) / 1 repeat day is the euro buyer's mean repeat-purchase value
    assert currencies == {"EUR": (3, 6, Decimal("150.00")), "USD": (1, 1, Decimal("7.50"))}


def test_the_platform_s_time_is_the_latest_clock_folded_on_any_partition(redis_url: str, redis_prefix: str) -> None:
    client = raw(redis_url)

    async def latest(store: RedisViewStore) -> int | None:
        return await store.latest_clock(TOPIC, 3)

    assert run(redis_url, redis_prefix, latest) is None  # no tick folded yet
    keys = RedisViewStore(redis_url, redis_prefix).keys
    client.set(keys.clock(TOPIC, 0), 1_000)
    client.set(keys.clock(TOPIC, 2), 5_000)
    assert run(redis_url, redis_prefix, latest) == 5_000
