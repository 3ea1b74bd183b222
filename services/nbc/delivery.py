"""Webhook delivery for a runtime: a dispatcher for every channel with a URL in settings.

A runtime starts it after the platform and stops it before closing the platform's
storage::

    webhooks = Webhooks.for_platform(platform)  # feed: Platform.triggers; ledger: PlatformLedger
    await webhooks.start()
    ...
    await webhooks.stop()  # each dispatcher finishes its request in flight

(or ``Webhooks(settings, feed_for, ledger_for)`` with other storage).

One process delivers at a time: ``for_platform`` runs the dispatchers only while this
process holds the platform's ``webhooks`` lease (the embedded platform's process always
does; scale-out API replicas share one in Redis, renewed every third of its term, taken
over by another replica when its holder stops renewing). A delivery in flight when a
lease moves may be made twice: receivers dedupe on ``Touchstream-Delivery``, and the
delivered figure counts each trigger once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import httpx
import structlog

from services.nbc import figures
from services.nbc.delivery_ledger import DeliveryDeadLetter, DeliveryLedger
from services.nbc.webhooks import ReadFeed, RetryPolicy, WebhookDispatcher
from services.settings import Settings

__all__ = ["TriggerSource", "DeliveryPlatform", "platform_feed", "PlatformLedger", "Webhooks", "Lease"]

log = structlog.get_logger("touchstream.webhooks")

USER_AGENT = "Touchstream-Webhooks/1"


class TriggerSource(Protocol):
    """The part of ``services.embedded.platform.Platform`` delivery reads: the trigger feed."""

    async def triggers(self, after: str | None, limit: int, channel: str | None,
                       customer_id: str | None) -> Any: ...  # a TriggerPage: .triggers, .next_cursor


def platform_feed(platform: TriggerSource, channel: str) -> ReadFeed:
    """One channel's feed as a dispatcher reads it."""

    async def read(after: str | None, limit: int) -> tuple[list[dict[str, Any]], str | None]:
        page = await platform.triggers(after, limit, channel, None)
        return page.triggers, page.next_cursor

    return read


class DeliveryPlatform(TriggerSource, Protocol):
    """The parts of ``services.embedded.platform.Platform`` webhook delivery uses."""

    settings: Settings

    async def delivery_cursor(self, name: str) -> str | None: ...

    async def save_delivery_cursor(self, name: str, cursor: str) -> None: ...

    async def count_delivered(self, rule: str, version: int, channel: str, trigger_id: str) -> bool: ...

    async def store_delivery_dead_letter(self, letter: dict[str, Any]) -> None: ...

    async def hold_lease(self, name: str, owner: str, seconds: float) -> bool: ...

    async def release_lease(self, name: str, owner: str) -> None: ...


class PlatformLedger:
    """A channel's ledger in the platform's storage: the cursor named ``webhook:<channel>``,
    and each delivery counted in its rule's figures (``GET /v1/analytics/triggers``) and
    ``touchstream_triggers_delivered_total``. Dead letters go to ``store_dead_letter``;
    without one they are only logged and counted (the trigger stays in the feed)."""

    def __init__(self, platform: DeliveryPlatform, channel: str,
                 store_dead_letter: Callable[[DeliveryDeadLetter], Awaitable[None]] | None = None):
        self.platform, self.name, self.store_dead_letter = platform, f"webhook:{channel}", store_dead_letter
        self.channel = channel

    async def load_cursor(self) -> str | None:
        return await self.platform.delivery_cursor(self.name)

    async def save_cursor(self, cursor: str) -> None:
        await self.platform.save_delivery_cursor(self.name, cursor)

    async def delivered(self, trigger: dict[str, Any]) -> None:
        rule = trigger.get("rule") or {}
        if isinstance(rule.get("id"), str) and isinstance(rule.get("version"), int):
            if await self.platform.count_delivered(rule["id"], rule["version"], self.channel,
                                                   str(trigger.get("trigger_id"))):
                figures.count_delivered(rule["id"], self.channel)

    async def dead_letter(self, letter: DeliveryDeadLetter) -> None:
        if self.store_dead_letter is not None:
            await self.store_dead_letter(letter)


class Webhooks:
    def __init__(self, settings: Settings, feed_for: Callable[[str], ReadFeed],
                 ledger_for: Callable[[str], DeliveryLedger], *, poll_seconds: float = 0.25,
                 lease: Lease | None = None):
        self.settings, self.feed_for, self.ledger_for, self.poll_seconds = settings, feed_for, ledger_for, poll_seconds
        self.client: httpx.AsyncClient | None = None
        self.dispatchers: list[WebhookDispatcher] = []
        self.lease = lease
        self._holding: asyncio.Task[None] | None = None

    @classmethod
    def for_platform(cls, platform: DeliveryPlatform, *, poll_seconds: float = 0.25) -> Webhooks:
        async def store(letter: DeliveryDeadLetter) -> None:
            await platform.store_delivery_dead_letter(dataclasses.asdict(letter))

        return cls(platform.settings, lambda channel: platform_feed(platform, channel),
                   lambda channel: PlatformLedger(platform, channel, store), poll_seconds=poll_seconds,
                   lease=Lease(platform, "webhooks", platform.settings.webhook_lease_seconds))

    async def start(self) -> None:
        """Start delivering: at once without a lease, else whenever this process holds it."""
        if not self.settings.webhook_urls:
            return
        if self.lease is None:
            await self._start_dispatchers()
        elif self._holding is None:
            self._holding = asyncio.create_task(self._hold(), name="webhooks-lease")

    async def _hold(self) -> None:
        assert self.lease is not None
        while True:
            try:
                held = await self.lease.hold()
            except Exception as error:  # noqa: BLE001 - storage trouble: we cannot know, so stop delivering
                log.warning("webhooks_lease_unavailable", error=type(error).__name__)
                held = False
            if held and self.client is None:
                await self._start_dispatchers()
            elif not held and self.client is not None:
                log.warning("webhooks_lease_lost")
                await self._stop_dispatchers()
            await asyncio.sleep(self.lease.seconds / 3)

    async def _start_dispatchers(self) -> None:
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
        if self._holding is not None:
            self._holding.cancel()
            await asyncio.gather(self._holding, return_exceptions=True)
            self._holding = None
        await self._stop_dispatchers()
        if self.lease is not None:
            try:
                await self.lease.release()
            except Exception as error:  # noqa: BLE001 - it expires by itself
                log.warning("webhooks_lease_not_released", error=type(error).__name__)

    async def _stop_dispatchers(self) -> None:
        await asyncio.gather(*(d.stop() for d in self.dispatchers))
        self.dispatchers = []
        if self.client is not None:
            await self.client.aclose()
            self.client = None


class Lease:
    """This process's claim on a named lease of the platform (one holder at a time)."""

    def __init__(self, platform: DeliveryPlatform, name: str, seconds: float):
        self.platform, self.name, self.seconds = platform, name, seconds
        self.owner = uuid.uuid4().hex

    async def hold(self) -> bool:
        return await self.platform.hold_lease(self.name, self.owner, self.seconds)

    async def release(self) -> None:
        await self.platform.release_lease(self.name, self.owner)
