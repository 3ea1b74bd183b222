"""Periodic work in the API process, and the clock scheduler: time enters the log as events.

``Periodic`` runs an action every so many seconds until stopped; a failure is the
action's to report and the next round tries again.

Every ``clock_tick_seconds`` the shell appends a clock tick at the current second
(``Platform.append_tick``; scale-out: one per partition). Folding a tick moves the
customers whose lifecycle deadline has passed on to that instant, so inactivity
transitions happen in real time, and a replay of the log reproduces every one of them.
A tick's id is its instant: two API processes ticking in the same second store it once.
A failed tick is logged and the next one covers the time it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from services.ports import Intake

__all__ = ["Periodic", "ClockScheduler"]

log = structlog.get_logger("touchstream.clock")


class Periodic:
    def __init__(self, name: str, every_seconds: float, action: Callable[[], Awaitable[Any]]):
        self.name, self.every, self.action = name, every_seconds, action
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the rounds (none when ``every_seconds`` is 0)."""
        if self.every > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            await self.action()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class ClockScheduler(Periodic):
    def __init__(self, platform: Intake, every_seconds: float):
        super().__init__("clock-ticks", every_seconds, self.tick)
        self.platform = platform

    async def tick(self) -> None:
        try:
            await self.platform.append_tick(datetime.now(UTC).replace(microsecond=0))
        except Exception as error:  # noqa: BLE001 - storage trouble: the next tick covers this one
            log.warning("clock_tick_failed", error=type(error).__name__)
