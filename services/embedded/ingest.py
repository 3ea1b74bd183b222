"""Group commit: many concurrent requests, one durable log transaction.

Each request hands its validated touchpoints to the writer thread and awaits the
outcome; the writer takes everything pending, appends it to the log in ONE SQLite
transaction (one fsync), and answers every request at once. So single-event requests
share the cost of durability, and a 2xx still means "committed".

Contract: ``append`` resolves to one ``Appended`` (position, duplicate) per document, or raises
``StorageUnavailable`` when the log could not commit (the caller answers 503).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import structlog
from eventsourcing.persistence import PersistenceError

from services import metrics
from services.embedded.eventlog import Appended, TouchpointLog
from services.ports import StorageUnavailable

__all__ = ["GroupCommitter"]

log = structlog.get_logger("touchstream.ingest")

_Pending = tuple[list[dict[str, Any]], asyncio.Future, asyncio.AbstractEventLoop]


class GroupCommitter:
    def __init__(self, log_: TouchpointLog, *, max_events: int = 5000, on_commit: Callable[[], Any] | None = None):
        self.log, self.max_events, self.on_commit = log_, max_events, on_commit
        self._pending: deque[_Pending] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="log-writer", daemon=True)
        self._thread.start()

    async def append(self, documents: list[dict[str, Any]]) -> list[Appended]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Appended]] = loop.create_future()
        with self._cond:
            if self._stopping or not self._thread.is_alive():
                raise StorageUnavailable("the log writer is not running")
            self._pending.append((documents, future, loop))
            self._cond.notify()
        return await future

    def _take(self) -> list[_Pending]:
        with self._cond:
            while not self._pending and not self._stopping:
                self._cond.wait()
            taken: list[_Pending] = []
            size = 0
            while self._pending and (not taken or size + len(self._pending[0][0]) <= self.max_events):
                item = self._pending.popleft()
                taken.append(item)
                size += len(item[0])
            return taken

    def _loop(self) -> None:
        while True:
            group = self._take()
            if not group:
                return  # stopping and drained
            documents = [d for docs, _, _ in group for d in docs]
            try:
                positions = self.log.append(documents)
            except Exception as error:  # noqa: BLE001 - whatever happened, every request gets an answer
                kind = "storage" if isinstance(error, PersistenceError) else "unexpected"
                log.error("log_append_failed", kind=kind, error=type(error).__name__, detail=str(error)[:200])
                failure = StorageUnavailable(f"{type(error).__name__}: {error}")
                for _, future, loop in group:
                    _answer(loop, _fail, future, failure)
                continue
            metrics.GROUP_COMMIT_EVENTS.observe(len(documents))
            if self.on_commit is not None:
                self.on_commit()
            offset = 0
            for docs, future, loop in group:
                _answer(loop, _succeed, future, positions[offset : offset + len(docs)])
                offset += len(docs)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self, timeout: float = 10.0) -> None:
        """Finish what is pending (every accepted request gets its answer), then stop."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        self._thread.join(max(0.0, deadline - time.monotonic()))


def _answer(loop: asyncio.AbstractEventLoop, how: Any, future: asyncio.Future, value: object) -> None:
    try:
        loop.call_soon_threadsafe(how, future, value)
    except RuntimeError:  # the requester's loop is closed: nobody is waiting any more
        pass


def _succeed(future: asyncio.Future, value: object) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future, error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
