"""A channel system receiving trigger webhooks on loopback (aiohttp), for tests: it verifies
every delivery with ``services.nbc.signing.verify`` as an integrator would, dedupes on the
delivery id, and answers as the test scripts it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from services.nbc.signing import ReplayCache, ReplayedDelivery, SignatureError, verify
from tools.bench.server import free_port

__all__ = ["SECRETS", "Receiver", "receiving"]

SECRETS = ["whsec-new-0123456789abcdef", "whsec-old-0123456789abcdef"]


@dataclass
class Receiver:
    """A channel system: verifies, dedupes on the delivery id, answers from a script per trigger.

    A script entry is a status, ``("retry_after", status, seconds)``, ``("slow", seconds)``
    (answers 200 after that long) or ``("hold", event)`` (answers 200 once the event is set)."""

    script: dict[str, list[Any]] = field(default_factory=dict)
    seen: ReplayCache = field(default_factory=ReplayCache)
    processed: list[str] = field(default_factory=list)  # each delivery acted on, in order
    attempts: list[tuple[str, float]] = field(default_factory=list)  # (delivery id, loop time)
    refused: list[str] = field(default_factory=list)  # signature errors
    answered: list[str] = field(default_factory=list)
    replayed: list[str] = field(default_factory=list)  # deliveries received again after being taken
    in_flight: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            delivery = verify(SECRETS[1], request.headers, body, seen=self.seen)  # the receiver still on the old secret
        except ReplayedDelivery:
            self.replayed.append(request.headers["Touchstream-Delivery"])
            return web.Response(status=200, text="already have it")
        except SignatureError as error:
            self.refused.append(str(error))
            return web.Response(status=401)
        self.attempts.append((delivery, asyncio.get_running_loop().time()))
        plan = self.script.get(delivery, [])
        step = plan.pop(0) if plan else 200
        if isinstance(step, tuple) and step[0] in ("slow", "hold"):
            self.processed.append(delivery)
            self.in_flight.set()
            await (asyncio.sleep(step[1]) if step[0] == "slow" else step[1].wait())
            self.answered.append(delivery)
            return web.Response(status=200)
        status, headers = (step[1], {"Retry-After": str(step[2])}) if isinstance(step, tuple) else (step, {})
        if 200 <= status < 300:
            self.processed.append(delivery)
        else:
            self.seen.forget(delivery)  # not taken: its retry must be
        return web.Response(status=status, headers=headers)


@asynccontextmanager
async def receiving(receiver: Receiver) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/hooks/call", receiver.handle)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/hooks/call"
    finally:
        await runner.cleanup()
