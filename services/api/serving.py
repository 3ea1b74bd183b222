"""Serving the API with uvicorn, and stopping it without losing a request.

On SIGTERM (or SIGINT) the platform is marked draining at once, so ``/readyz`` answers 503
while the process still serves; after ``shutdown_delay_seconds`` (time for load balancers
and Kubernetes endpoints to notice) uvicorn stops accepting connections, waits for the
requests in flight (at most ``shutdown_grace_seconds``: each one was either answered
after its commit or not at all), then the lifespan closes the platform: the log writer
drains and commits, the projection runner stops after its last batch. A second signal
during the delay stops at once, as uvicorn's own handling does.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable
from types import FrameType

import structlog
import uvicorn
from fastapi import FastAPI

from services.ports import Runtime

__all__ = ["DrainingServer", "serve"]

log = structlog.get_logger("touchstream.api")


class DrainingServer(uvicorn.Server):
    """uvicorn's server, not ready from the first signal, closing after a delay."""

    def __init__(self, config: uvicorn.Config, platform: Runtime, delay_seconds: float,
                 on_ready: Callable[[], None] | None = None):
        super().__init__(config)
        self.platform, self.delay_seconds, self.on_ready = platform, delay_seconds, on_ready
        self._exit_at: float | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.on_ready is not None:
            self.on_ready()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        first = not self.platform.draining
        self.platform.draining = True  # /readyz: 503 from now on
        if first and self.delay_seconds > 0:
            self._exit_at = time.monotonic() + self.delay_seconds
            self._captured_signals.append(sig)  # re-raised after shutdown, as uvicorn does
            log.info("draining", delay_seconds=self.delay_seconds)
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self._exit_at is not None and time.monotonic() >= self._exit_at:
            self.should_exit = True
        return await super().on_tick(counter)


def serve(api: FastAPI, platform: Runtime, host: str, port: int, *, banner: str | None = None) -> None:
    """Run until SIGTERM/SIGINT; return once the platform is closed. ``banner``: printed
    on standard error once the server listens (where to go, for a person at a terminal)."""
    settings = platform.settings
    config = uvicorn.Config(api, host=host, port=port, log_config=None, access_log=False, loop="uvloop",
                            http="httptools", timeout_graceful_shutdown=settings.shutdown_grace_seconds)

    def ready() -> None:
        if banner:
            print(banner, file=sys.stderr, flush=True)

    DrainingServer(config, platform, settings.shutdown_delay_seconds, on_ready=ready).run()
