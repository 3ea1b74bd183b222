"""Webhook dispatchers against a real receiver on loopback (aiohttp), which verifies every
signature with ``services.nbc.signing.verify`` and answers as each test scripts it.

The feed is a list of scripted triggers (``tests/support/trigger_feed.py``), so each test
states exactly what is in it; test_webhook_delivery_embedded.py delivers the embedded
platform's own triggers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
import structlog
from prometheus_client import REGISTRY

from services.nbc.delivery import Webhooks, platform_feed
from services.nbc.delivery_ledger import MemoryLedger
from services.nbc.webhooks import RetryPolicy, WebhookDispatcher
from services.settings import Settings
from tests.support.server import free_port
from tests.support.trigger_feed import TriggerFeedStandIn, trigger
from tests.support.webhook_receiver import SECRETS, Receiver, receiving

pytestmark = pytest.mark.platform_stand_in

FAST = RetryPolicy(timeout_seconds=2.0, max_attempts=5, base_seconds=0.02, cap_seconds=2.0)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"channel": "call", **labels}) or 0.0


def dispatcher(url: str, feed: TriggerFeedStandIn, ledger: MemoryLedger, client: httpx.AsyncClient,
               policy: RetryPolicy = FAST) -> WebhookDispatcher:
    return WebhookDispatcher("call", url, SECRETS, platform_feed(feed, "call"), ledger, client, policy,
                             poll_seconds=0.02)


async def until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


def test_every_trigger_is_delivered_once_in_feed_order_after_retries_with_growing_backoff() -> None:
    feed = TriggerFeedStandIn([trigger() for _ in range(5)] + [trigger("email")])
    ids = [t["trigger_id"] for t in feed.items if t["channel"] == "call"]
    receiver = Receiver({ids[1]: [503, 503, 503], ids[3]: [("retry_after", 429, 1)]})
    ledger = MemoryLedger()
    before = {k: sample(f"touchstream_webhook_{m}_total", **{lab: k}) for m, lab, k in [
        ("deliveries", "outcome", "delivered"), ("attempts", "result", "server_error"),
        ("attempts", "result", "throttled"), ("attempts", "result", "ok")]}
    delivered_seconds = sample("touchstream_webhook_delivery_seconds_count")

    async def scenario() -> None:
        async with receiving(receiver) as url, httpx.AsyncClient() as client:
            sender = dispatcher(url, feed, ledger, client)
            with structlog.testing.capture_logs() as logs:
                sender.start()
                await until(lambda: len(receiver.processed) == 5, "five deliveries")
                past_the_feed = feed.cursor_after(feed.items[-1]["trigger_id"])
                await until(lambda: ledger.saved[-1:] == [past_the_feed], "the cursor past another channel's trigger")
                await sender.stop()
        assert receiver.processed == ids and not receiver.refused  # in order, once each, all verified
        assert [i for i, _ in receiver.attempts] == [ids[0], *[ids[1]] * 4, ids[2], ids[3], ids[3], ids[4]]
        retries = [e for e in logs if e["event"] == "webhook_retry" and e["trigger_id"] == ids[1]]
        delays = [e["delay_seconds"] for e in retries]
        assert [e["attempt"] for e in retries] == [1, 2, 3] and {e["status"] for e in retries} == {503}
        assert delays == sorted(delays) and delays[-1] > delays[0]  # backoff grows
        times = [t for i, t in receiver.attempts if i == ids[1]]
        assert all(b - a >= d - 0.005 for a, b, d in zip(times, times[1:], delays, strict=False))
        throttled = [t for i, t in receiver.attempts if i == ids[3]]
        assert throttled[1] - throttled[0] >= 0.99  # Retry-After: 1 honoured (within the cap)
        assert ledger.saved[:5] == [feed.cursor_after(i) for i in ids]  # one save per trigger, after it
        assert ledger.saved[5:] == [feed.cursor_after(feed.items[-1]["trigger_id"])]  # then past another channel's
        assert not ledger.letters and ledger.acknowledged == ids

    run(scenario)
    assert sample("touchstream_webhook_deliveries_total", outcome="delivered") - before["delivered"] == 5
    assert sample("touchstream_webhook_attempts_total", result="server_error") - before["server_error"] == 3
    assert sample("touchstream_webhook_attempts_total", result="throttled") - before["throttled"] == 1
    assert sample("touchstream_webhook_attempts_total", result="ok") - before["ok"] == 5
    assert sample("touchstream_webhook_delivery_seconds_count") - delivered_seconds == 5
    assert sample("touchstream_webhook_lag_seconds") == 0  # drained


def test_a_refused_trigger_is_a_dead_letter_and_the_next_one_is_delivered() -> None:
    feed = TriggerFeedStandIn([trigger(), trigger()])
    refused, after = (t["trigger_id"] for t in feed.items)
    receiver = Receiver({refused: [400]})
    ledger = MemoryLedger()
    before = sample("touchstream_webhook_deliveries_total", outcome="failed_permanent")

    async def scenario() -> None:
        async with receiving(receiver) as url, httpx.AsyncClient() as client:
            sender = dispatcher(url, feed, ledger, client)
            sender.start()
            await until(lambda: receiver.processed == [after], "the next trigger")
            await sender.stop()

    run(scenario)
    assert [i for i, _ in receiver.attempts] == [refused, after]  # a refusal is not retried
    (letter,) = ledger.letters
    assert (letter.trigger_id, letter.channel, letter.outcome, letter.status, letter.attempts) == (
        refused, "call", "failed_permanent", 400, 1)
    assert letter.reason == "refused: HTTP 400" and letter.trigger == feed.items[0]
    assert ledger.saved == [feed.cursor_after(refused), feed.cursor_after(after)]
    assert sample("touchstream_webhook_deliveries_total", outcome="failed_permanent") - before == 1


def test_a_trigger_still_failing_after_the_last_attempt_is_dead_lettered() -> None:
    feed = TriggerFeedStandIn([trigger(), trigger()])
    failing, after = (t["trigger_id"] for t in feed.items)
    receiver = Receiver({failing: [503] * 3})
    ledger = MemoryLedger()
    before = sample("touchstream_webhook_deliveries_total", outcome="dead_lettered")

    async def scenario() -> None:
        async with receiving(receiver) as url, httpx.AsyncClient() as client:
            sender = dispatcher(url, feed, ledger, client, RetryPolicy(2.0, 3, 0.02, 1.0))
            sender.start()
            await until(lambda: receiver.processed == [after], "the next trigger")
            await sender.stop()

    run(scenario)
    (letter,) = ledger.letters
    assert (letter.outcome, letter.status, letter.attempts) == ("dead_lettered", 503, 3)
    assert letter.reason == "3 attempts failed, the last: HTTP 503"
    assert [i for i, _ in receiver.attempts] == [failing] * 3 + [after]
    assert sample("touchstream_webhook_deliveries_total", outcome="dead_lettered") - before == 1


def test_a_receiver_too_slow_to_answer_gets_the_trigger_again_and_dedupes_it() -> None:
    feed = TriggerFeedStandIn([trigger()])
    (slow,) = (t["trigger_id"] for t in feed.items)
    receiver = Receiver({slow: [("slow", 3.0)]})
    ledger = MemoryLedger()
    before = sample("touchstream_webhook_attempts_total", result="timeout")

    async def scenario() -> None:
        async with receiving(receiver) as url, httpx.AsyncClient() as client:
            sender = dispatcher(url, feed, ledger, client, RetryPolicy(0.3, 5, 0.02, 1.0))
            sender.start()
            await until(lambda: ledger.saved == [feed.cursor_after(slow)], "the delivery acknowledged")
            await sender.stop()
            await until(lambda: receiver.answered == [slow], "the slow answer")

    run(scenario)
    assert receiver.processed == [slow] and receiver.replayed  # sent at least twice, acted on once
    assert sample("touchstream_webhook_attempts_total", result="timeout") - before >= 1
    assert not ledger.letters


def test_an_unreachable_receiver_ends_in_a_dead_letter_without_a_status() -> None:
    feed = TriggerFeedStandIn([trigger()])
    ledger = MemoryLedger()
    before = sample("touchstream_webhook_attempts_total", result="connection_error")

    async def scenario() -> None:
        async with httpx.AsyncClient() as client:
            sender = dispatcher(f"http://127.0.0.1:{free_port()}/nobody", feed, ledger, client,
                                RetryPolicy(2.0, 2, 0.02, 1.0))
            sender.start()
            await until(lambda: bool(ledger.letters), "a dead letter")
            await sender.stop()

    run(scenario)
    (letter,) = ledger.letters
    assert (letter.outcome, letter.status, letter.attempts) == ("dead_lettered", None, 2)
    assert letter.reason.startswith("2 attempts failed, the last: connection failed (")
    assert sample("touchstream_webhook_attempts_total", result="connection_error") - before == 2


def test_an_expired_trigger_is_counted_and_skipped() -> None:
    feed = TriggerFeedStandIn([trigger(valid_for=timedelta(hours=-1)), trigger()])
    expired, fresh = (t["trigger_id"] for t in feed.items)
    receiver = Receiver()
    ledger = MemoryLedger()
    before = sample("touchstream_webhook_deliveries_total", outcome="expired")

    async def scenario() -> None:
        async with receiving(receiver) as url, httpx.AsyncClient() as client:
            sender = dispatcher(url, feed, ledger, client)
            sender.start()
            await until(lambda: receiver.processed == [fresh], "the fresh trigger")
            await sender.stop()

    run(scenario)
    assert [i for i, _ in receiver.attempts] == [fresh]
    assert ledger.saved == [feed.cursor_after(expired), feed.cursor_after(fresh)] and not ledger.letters
    assert sample("touchstream_webhook_deliveries_total", outcome="expired") - before == 1


def test_the_cursor_stays_before_a_trigger_until_it_is_delivered() -> None:
    feed = TriggerFeedStandIn([trigger(), trigger()])
    first, second = (t["trigger_id"] for t in feed.items)
    receiver = Receiver({second: [503] * 4})
    ledger = MemoryLedger()

    async def scenario() -> None:
        async with receiving(receiver) as url, httpx.AsyncClient() as client:
            sender = dispatcher(url, feed, ledger, client, RetryPolicy(2.0, 5, 0.2, 1.0))
            sender.start()
            await until(lambda: len([i for i, _ in receiver.attempts if i == second]) == 3, "retries")
            assert ledger.cursor == feed.cursor_after(first)  # retrying the second: not past it
            await until(lambda: receiver.processed == [first, second], "both delivered")
            await sender.stop()

    run(scenario)
    assert ledger.saved == [feed.cursor_after(first), feed.cursor_after(second)]


def test_stop_finishes_the_request_in_flight_saves_its_cursor_and_sends_nothing_more() -> None:
    feed = TriggerFeedStandIn([trigger(), trigger()])
    held, untouched = (t["trigger_id"] for t in feed.items)
    release = asyncio.Event
    ledger = MemoryLedger()

    async def scenario() -> None:
        gate = release()
        receiver = Receiver({held: [("hold", gate)]})
        async with receiving(receiver) as url, httpx.AsyncClient() as client:
            sender = dispatcher(url, feed, ledger, client)
            sender.start()
            await until(receiver.in_flight.is_set, "the request in flight")
            stopping = asyncio.create_task(sender.stop())
            await asyncio.sleep(0.2)
            assert not stopping.done()  # waits for the answer
            gate.set()
            await stopping
            assert receiver.answered == [held]
            await asyncio.sleep(0.2)
            assert [i for i, _ in receiver.attempts] == [held]  # nothing sent after stop
        assert ledger.saved == [feed.cursor_after(held)]

    run(scenario)


def test_stopped_between_retries_the_trigger_is_sent_again_on_the_next_start() -> None:
    feed = TriggerFeedStandIn([trigger()])
    (pending,) = (t["trigger_id"] for t in feed.items)
    ledger = MemoryLedger()

    async def scenario() -> None:
        receiver = Receiver({pending: [503]})
        async with receiving(receiver) as url, httpx.AsyncClient() as client:
            sender = dispatcher(url, feed, ledger, client, RetryPolicy(2.0, 5, 600.0, 600.0))
            sender.start()
            await until(lambda: len(receiver.attempts) == 1, "the first attempt")
            await sender.stop()  # does not sit out the 5-10 minute backoff
            assert ledger.cursor is None and not ledger.letters
            restarted = dispatcher(url, feed, ledger, client)
            restarted.start()
            await until(lambda: receiver.processed == [pending], "delivered after the restart")
            await restarted.stop()
        assert ledger.saved == [feed.cursor_after(pending)]

    run(scenario)


def test_the_platform_s_webhooks_run_one_dispatcher_per_configured_channel() -> None:
    feed = TriggerFeedStandIn([trigger("call"), trigger("email"), trigger("sms")])
    ledgers: dict[str, MemoryLedger] = {}

    async def scenario() -> None:
        receiver = Receiver()
        async with receiving(receiver) as url:
            settings = Settings(webhook_urls={"call": url, "email": url},
                                webhook_secrets=",".join(SECRETS))  # type: ignore[arg-type]
            webhooks = Webhooks(settings, lambda channel: platform_feed(feed, channel),
                                lambda channel: ledgers.setdefault(channel, MemoryLedger()), poll_seconds=0.02)
            await webhooks.start()
            await until(lambda: len(receiver.processed) == 2, "call and email delivered")
            await webhooks.stop()
        assert sorted(receiver.processed) == sorted(t["trigger_id"] for t in feed.items[:2])  # no sms webhook
        assert sorted(ledgers) == ["call", "email"]

    run(scenario)


def test_read_by_pages_the_cursor_moves_past_a_page_once_all_of_it_is_done_and_not_before_a_stop() -> None:
    feed = TriggerFeedStandIn([trigger() for _ in range(4)])
    ids = [t["trigger_id"] for t in feed.items]
    ledger = MemoryLedger()

    async def scenario() -> None:
        gate = asyncio.Event()
        receiver = Receiver({ids[1]: [("hold", gate)]})
        async with receiving(receiver) as url, httpx.AsyncClient() as client:
            paged = WebhookDispatcher("call", url, SECRETS, platform_feed(feed, "call"), ledger, client, FAST,
                                      poll_seconds=0.02, page_size=3)
            paged.start()
            await until(receiver.in_flight.is_set, "the second trigger in flight")
            stopping = asyncio.create_task(paged.stop())
            gate.set()
            await stopping  # stopped inside the first page: its cursor is not saved
            assert ledger.saved == [] and receiver.processed == ids[:2]
            resumed = WebhookDispatcher("call", url, SECRETS, platform_feed(feed, "call"), ledger, client, FAST,
                                        poll_seconds=0.02, page_size=3)
            resumed.start()
            await until(lambda: len(receiver.processed) == 4, "the rest")
            await resumed.stop()
            assert receiver.replayed == ids[:2] and receiver.processed == ids  # sent again, deduped
        assert ledger.saved == [feed.cursor_after(ids[2]), feed.cursor_after(ids[3])]

    run(scenario)


def test_a_feed_that_fails_for_a_while_delays_delivery_and_loses_nothing() -> None:
    feed = TriggerFeedStandIn([trigger(), trigger()])
    ids = [t["trigger_id"] for t in feed.items]
    ledger = MemoryLedger()
    outages = [ConnectionError("storage down")] * 2
    read = platform_feed(feed, "call")

    async def flaky(after: str | None, limit: int) -> tuple[list[dict[str, Any]], str | None]:
        if outages:
            raise outages.pop()
        return await read(after, limit)

    async def scenario() -> None:
        receiver = Receiver()
        async with receiving(receiver) as url, httpx.AsyncClient() as client:
            sender = WebhookDispatcher("call", url, SECRETS, flaky, ledger, client, FAST, poll_seconds=0.02)
            with structlog.testing.capture_logs() as logs:
                sender.start()
                await until(lambda: receiver.processed == ids, "both delivered")
                await sender.stop()
        failures = [e for e in logs if e["event"] == "webhook_storage_failed"]
        assert [(e["channel"], e["error"]) for e in failures] == [("call", "ConnectionError")] * 2

    run(scenario)
