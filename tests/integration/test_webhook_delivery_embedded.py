"""The embedded platform's own triggers reach channel systems: a contact form posted, the
engine's callback trigger committed with the views, then delivered signed to a webhook
receiver on loopback (delivery cursor and the rule's delivered figure stored), and served
by the feed and the stream with the platform's own cursors."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from prometheus_client import REGISTRY

from projections.codec import to_dict
from projections.touchpoints import CustomerRef
from services.embedded.platform import EmbeddedPlatform
from services.nbc.delivery import Webhooks
from services.settings import Settings
from tests.support.touchpoints import web_form
from tests.support.trigger_api import READ, Served, events
from tests.support.webhook_receiver import SECRETS, Receiver, receiving


async def until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


def test_a_contact_form_s_callback_trigger_is_delivered_to_the_call_centre_webhook(tmp_path: Path) -> None:
    counted = REGISTRY.get_sample_value("touchstream_triggers_delivered_total",
                                        {"rule": "callback_after_contact_form", "channel": "call"}) or 0.0

    async def scenario() -> None:
        receiver = Receiver()
        async with receiving(receiver) as url:
            settings = Settings(data_dir=tmp_path, webhook_urls={"call": url}, webhook_secrets=",".join(SECRETS),
                                clock_tick_seconds=0, value_refit_seconds=0)  # type: ignore[arg-type]
            platform = EmbeddedPlatform(settings)
            await platform.start()
            try:
                # a minute ago, so the callback is due within the hour whatever the time of day
                sent = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
                [(position, _)] = await platform.append([to_dict(web_form(f"wf-{uuid.uuid4().hex}", sent))])
                assert (await platform.caught_up(position, 10)).reached
                page = await platform.triggers(None, 10, "call", None)
                (trigger,) = page.triggers
                assert trigger["rule"]["id"] == "callback_after_contact_form"
                webhooks = Webhooks.for_platform(platform, poll_seconds=0.02)
                await webhooks.start()
                await until(lambda: receiver.processed == [trigger["trigger_id"]], "the callback delivered")
                await webhooks.stop()
                assert await platform.delivery_cursor("webhook:call") == page.next_cursor
                figures = await platform.contact_figures()
                assert figures[("callback_after_contact_form", 1, "call", "delivered")] == 1
            finally:
                await platform.close()
        assert not receiver.refused

    asyncio.run(scenario())
    assert REGISTRY.get_sample_value("touchstream_triggers_delivered_total",
                                     {"rule": "callback_after_contact_form", "channel": "call"}) == counted + 1


def test_the_feed_and_the_stream_serve_the_platform_s_triggers_with_its_own_cursors(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, clock_tick_seconds=0, value_refit_seconds=0)
    platform = EmbeddedPlatform(settings)
    sent = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)

    async def two_contact_forms() -> list[str]:
        await platform.start()
        forms = [to_dict(web_form(f"wf-{uuid.uuid4().hex}", sent, ref=CustomerRef(customer_id=c)))
                 for c in ("c-web-1", "c-web-2")]
        positions = await platform.append(forms)
        assert (await platform.caught_up(positions[-1][0], 10)).reached
        return [t["trigger_id"] for t in (await platform.triggers(None, 10, "call", None)).triggers]

    ids = asyncio.run(two_contact_forms())
    try:
        assert len(ids) == 2
        with Served(platform) as served, httpx.Client(base_url=served.url, headers=READ, timeout=10) as client:
            page = client.get("/v1/triggers", params={"channel": "call"}).json()
            assert [t["trigger_id"] for t in page["triggers"]] == ids
            with client.stream("GET", "/v1/triggers/stream", params={"channel": "call"}) as stream:
                _, first, second = events(stream.iter_lines(), 3)
            assert [first["data"]["trigger_id"], second["data"]["trigger_id"]] == ids
            assert second["id"] == page["next_cursor"]
            with client.stream("GET", "/v1/triggers/stream", headers={"Last-Event-ID": first["id"]}) as stream:
                _, resumed = events(stream.iter_lines(), 2)
            assert resumed["data"]["trigger_id"] == ids[1]
            assert client.get("/v1/triggers", params={"since": "garbage"}).status_code == 422
    finally:
        asyncio.run(platform.close())
