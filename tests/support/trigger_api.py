"""The trigger routes served for tests: uvicorn on loopback in a thread, and an SSE reader."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI

from services.api.auth import KeyRing
from services.api.serving import DrainingServer
from services.api.trigger_routes import trigger_router
from services.settings import Settings
from tools.bench.server import free_port

__all__ = ["READ", "Served", "events"]

READ = {"Authorization": "Bearer ts-trigger-read-key-0001"}


class Served:
    """``trigger_router`` over ``feed`` (anything with ``triggers`` and ``draining``), served by
    the product's ``DrainingServer`` in a thread; a stop signal is ``server.handle_exit``."""

    def __init__(self, feed: Any):
        self.feed = feed
        settings = Settings(api_keys={"ts-trigger-read-key-0001": ("read",), "ts-trigger-ingest-key-01": ("ingest",)})
        app = FastAPI()
        app.include_router(trigger_router(feed, KeyRing(settings), poll_seconds=0.02, heartbeat_seconds=0.3))
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, access_log=False,
                                lifespan="off", timeout_graceful_shutdown=30)
        self.server = DrainingServer(config, feed, 0.0)  # type: ignore[arg-type]
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def events(lines: Iterator[str], count: int) -> list[dict[str, Any]]:
    """The next ``count`` events of a stream (comments kept as {"comment": ...})."""
    found: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    for line in lines:
        if line == "":
            if current:
                found.append(current)
                current = {}
            if len(found) == count:
                return found
        elif line.startswith(":"):
            current["comment"] = line[1:].strip()
        else:
            name, _, value = line.partition(": ")
            current[name] = orjson.loads(value) if name == "data" else value
    return found
