"""Webhook delivery for a runtime: a dispatcher for every channel with a URL in settings.

A runtime wires it with its trigger feed and a ledger per channel, starts it with the
platform and stops it before closing the platform's storage::

    webhooks = Webhooks(settings, lambda channel: platform_feed(platform, channel), platform.delivery_ledger)
    await webhooks.start()
    ...
    await webhooks.stop()  # each dispatcher finishes its request in flight

Run it in one process per deployment (the embedded platform; one elected process in the
scale-out runtime): two processes on one ledger would deliver every trigger twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

import httpx
import structlog

from services.nbc.delivery_ledger import DeliveryLedger
from services.nbc.webhooks import ReadFeed, RetryPolicy, WebhookDispatcher
from services.settings import Settings

__all__ = ["TriggerSource", "platform_feed", "Webhooks"]

log = structlog.get_logger("touchstream.webhooks")

USER_AGENT = "Touchstream-Webhooks/1"


class TriggerSource(Protocol):
    """The part of ``services.platform.Platform`` delivery reads: the trigger feed."""

    async def triggers(self, after: str | None, limit: int, channel: str | None,
                       customer_id: str | None) -> Any: ...  # a TriggerPage: .triggers, .next_cursor


def platform_feed(platform: TriggerSource, channel: str) -> ReadFeed:
    """One channel's feed as a dispatcher reads it."""

    async def read(after: str | None, limit: int) -> tuple[list[dict[str, Any]], str | None]:
        page = await platform.triggers(after, limit, channel, None)
        return page.triggers, page.next_cursor

    return read


class Webhooks:
    def __init__(self, settings: Settings, feed_for: Callable[[str], ReadFeed],
                 ledger_for: Callable[[str], DeliveryLedger], *, poll_seconds: float = 0.25):
        self.settings, self.feed_for, self.ledger_for, self.poll_seconds = settings, feed_for, ledger_for, poll_seconds
        self.client: httpx.AsyncClient | None = None
        self.dispatchers: list[WebhookDispatcher] = []

    async def start(self) -> None:
        """Start one dispatcher per configured channel (none configured: nothing runs)."""
        if not self.settings.webhook_urls or self.client is not None:
            return
        self.client = httpx.AsyncClient(headers={"User-Agent": USER_AGENT}, follow_redirects=False)
        secrets = [s.get_secret_value() for s in self.settings.webhook_secrets]
        policy = RetryPolicy.of(self.settings)
        for channel, url in sorted(self.settings.webhook_urls.items()):
            dispatcher = WebhookDispatcher(channel, url, secrets, self.feed_for(channel), self.ledger_for(channel),
                                           self.client, policy, poll_seconds=self.poll_seconds)
            dispatcher.start()
            self.dispatchers.append(dispatcher)
        log.info("webhooks_started", channels=sorted(self.settings.webhook_urls), signing_secrets=len(secrets))

    async def stop(self) -> None:
        await asyncio.gather(*(d.stop() for d in self.dispatchers))
        self.dispatchers = []
        if self.client is not None:
            await self.client.aclose()
            self.client = None
