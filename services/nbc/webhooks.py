"""Webhook delivery of next-best-contact triggers: one dispatcher per channel.

A dispatcher follows its channel's trigger feed from a saved cursor and POSTs each
trigger (its JSON document, signed: ``services.nbc.signing``) to the channel's URL, one
at a time in feed order. Then, by the answer (``services.nbc.webhook_policy``):

* 2xx — delivered;
* a refusal (4xx other than 408/429) — a dead letter with outcome ``failed_permanent``;
* 408, 429, 5xx, timeout, connection error — retried with backoff, a fresh signature each
  time, until ``webhook_max_attempts``; then a dead letter with outcome ``dead_lettered``.
* A trigger whose ``valid_until`` has passed is not sent (outcome ``expired``), also when
  it expires between retries.

The cursor is saved only once the trigger before it is delivered, dead-lettered or
expired: delivery is at least once, and receivers dedupe on ``Touchstream-Delivery`` (the
trigger id). The feed is read one trigger at a time by default because a page's cursor
points past the whole page: so a stop or crash re-sends at most the trigger in flight.
``stop()`` lets the request in flight finish (bounded by the timeout), saves the cursor if
it was delivered, and returns; a trigger stopped between retries is sent again next start.

Storage (cursor, dead letters) belongs to the runtime, through a ``DeliveryLedger``
(``services.nbc.delivery_ledger``). Only
one dispatcher per channel may run against one ledger: two would deliver twice.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import structlog

from services import metrics
from services.nbc.delivery_ledger import DeliveryDeadLetter, DeliveryLedger
from services.nbc.signing import signed_headers
from services.nbc.webhook_policy import attempt_result, backoff_delay, is_retryable, retry_after_seconds

__all__ = ["OUTCOMES", "ReadFeed", "RetryPolicy", "WebhookDispatcher"]

log = structlog.get_logger("touchstream.webhooks")

OUTCOMES = ("delivered", "failed_permanent", "dead_lettered", "expired")

ReadFeed = Callable[[str | None, int], Awaitable[tuple[list[dict[str, Any]], str | None]]]
"""``read(after, limit) -> (triggers oldest first, next cursor)``: one channel's feed."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    timeout_seconds: float = 10.0
    max_attempts: int = 8
    base_seconds: float = 1.0
    cap_seconds: float = 300.0

    @classmethod
    def of(cls, settings: Any) -> RetryPolicy:
        return cls(settings.webhook_timeout_seconds, settings.webhook_max_attempts,
                   settings.webhook_backoff_base_seconds, settings.webhook_backoff_cap_seconds)


def _instant(value: Any) -> float | None:
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


class WebhookDispatcher:
    def __init__(self, channel: str, url: str, secrets: Sequence[str], read: ReadFeed,
                 ledger: DeliveryLedger, client: httpx.AsyncClient, policy: RetryPolicy, *,
                 poll_seconds: float = 0.25, page_size: int = 1, clock: Callable[[], float] = time.time,
                 jitter: Callable[[], float] = random.random):
        self.channel, self.url, self.secrets = channel, url, list(secrets)
        self.read, self.ledger, self.client, self.policy = read, ledger, client, policy
        self.poll_seconds, self.page_size, self.clock, self.jitter = poll_seconds, page_size, clock, jitter
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        for outcome in OUTCOMES:  # exported at 0 from the start, so increase() sees the first failure
            metrics.child(metrics.WEBHOOK_DELIVERIES, self.channel, outcome)
        self._task = asyncio.get_running_loop().create_task(self.run(), name=f"webhooks-{self.channel}")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def run(self) -> None:
        """Deliver until ``stop()``; storage trouble is logged and retried, never fatal."""
        cursor: str | None = None
        loaded = False
        while not self._stopping.is_set():
            try:
                if not loaded:
                    cursor, loaded = await self.ledger.load_cursor(), True
                triggers, after = await self.read(cursor, self.page_size)
                for index, trigger in enumerate(triggers):
                    if not await self._handle(trigger) or (self._stopping.is_set() and index < len(triggers) - 1):
                        return  # stopped before this page was done: it is read again next start
                if not triggers:
                    metrics.child(metrics.WEBHOOK_LAG_SECONDS, self.channel).set(0)
                    await self._pause(self.poll_seconds)
                if after is not None and after != cursor:  # an empty page may still move past other channels
                    await self.ledger.save_cursor(after)
                    cursor = after
            except Exception as error:  # noqa: BLE001 - feed or ledger unavailable: try again shortly
                log.warning("webhook_storage_failed", channel=self.channel, error=type(error).__name__)
                loaded = False
                await self._pause(max(self.poll_seconds, self.policy.base_seconds))

    async def _pause(self, seconds: float) -> bool:
        """Wait ``seconds`` or until stopped; True when stopped."""
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def _handle(self, trigger: dict[str, Any]) -> bool:
        """Deliver, dead-letter or skip one trigger; False when stopped before it was done with."""
        trigger_id = str(trigger.get("trigger_id") or "")
        if not trigger_id:
            await self._give_up(trigger, "failed_permanent", None, "the trigger has no trigger_id", 0)
            return True
        valid_until, at = _instant(trigger.get("valid_until")), _instant(trigger.get("at"))
        body = orjson.dumps(trigger)
        started = time.monotonic()
        status: int | None = None
        reason = ""
        for attempt in range(1, self.policy.max_attempts + 1):
            now = self.clock()
            if valid_until is not None and now >= valid_until:
                self._count("expired")
                log.info("webhook_trigger_expired", channel=self.channel, trigger_id=trigger_id, attempts=attempt - 1)
                return True
            metrics.child(metrics.WEBHOOK_LAG_SECONDS, self.channel).set(max(0.0, now - at) if at else 0.0)
            result, status, retry_after, reason = await self._post(body, trigger_id)
            metrics.child(metrics.WEBHOOK_ATTEMPTS, self.channel, result).inc()
            if result == "ok":
                metrics.child(metrics.WEBHOOK_DELIVERY_SECONDS, self.channel).observe(time.monotonic() - started)
                await self.ledger.delivered(trigger)
                self._count("delivered")
                log.debug("webhook_delivered", channel=self.channel, trigger_id=trigger_id, status=status,
                          attempts=attempt)
                return True
            if not is_retryable(result):
                await self._give_up(trigger, "failed_permanent", status, f"refused: {reason}", attempt)
                return True
            if attempt == self.policy.max_attempts:
                break
            delay = backoff_delay(attempt, self.policy.base_seconds, self.policy.cap_seconds, self.jitter(),
                                  retry_after)
            log.info("webhook_retry", channel=self.channel, trigger_id=trigger_id, attempt=attempt, result=result,
                     status=status, delay_seconds=round(delay, 3))
            if await self._pause(delay):
                return False
        await self._give_up(trigger, "dead_lettered", status,
                            f"{self.policy.max_attempts} attempts failed, the last: {reason}", self.policy.max_attempts)
        return True

    async def _post(self, body: bytes, trigger_id: str) -> tuple[str, int | None, float | None, str]:
        """(result label, status, Retry-After seconds, reason) of one signed POST."""
        headers = signed_headers(body, trigger_id, self.secrets, int(self.clock()))
        try:
            response = await self.client.post(self.url, content=body, headers=headers,
                                              timeout=self.policy.timeout_seconds)
        except httpx.TimeoutException:
            return "timeout", None, None, f"no answer within {self.policy.timeout_seconds:g} s"
        except httpx.TransportError as error:
            return "connection_error", None, None, f"connection failed ({type(error).__name__})"
        status = response.status_code
        return (attempt_result(status), status, retry_after_seconds(response.headers.get("retry-after"), self.clock()),
                f"HTTP {status}")

    async def _give_up(self, trigger: dict[str, Any], outcome: str, status: int | None, reason: str,
                       attempts: int) -> None:
        at = datetime.fromtimestamp(self.clock(), UTC).isoformat(timespec="microseconds")
        letter = DeliveryDeadLetter(str(trigger.get("trigger_id") or ""), self.channel, outcome, status, reason,
                                    attempts, at, trigger)
        await self.ledger.dead_letter(letter)
        self._count(outcome)
        log.warning("webhook_dead_letter", channel=self.channel, trigger_id=letter.trigger_id, outcome=outcome,
                    status=status, reason=reason, attempts=attempts)

    def _count(self, outcome: str) -> None:
        metrics.child(metrics.WEBHOOK_DELIVERIES, self.channel, outcome).inc()
