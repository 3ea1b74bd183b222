"""The scale-out runtime for the scenario suite: ``register_runtime("kafka", ...)``.

Each runtime is a ``tools.stack.Stack`` of its own in the test's data directory: a
fresh in-memory Tansu broker and a fresh redis-server (both start in well under a
second), one view worker and the API, with settings for tests (10 ms fetch wait, 6 s
session (a new group's join waits half of it), 0.5 s heartbeat, 4 partitions, a 2 s Kafka request timeout so an unreachable
broker gives a 503 quickly). Its Redis is a one-node Redis Cluster: every scenario also
checks that no call the runtime makes crosses hash slots. The factory returns once the API and every worker are ready,
so a first read with ``min_position`` does not wait for the group to form.

Broker and Redis are infrastructure: ``kill()`` (SIGKILL) and ``stop()`` (graceful) end the
API and the workers only, and ``restart()`` starts them again on the same broker and
Redis. ``storage_unavailable()`` freezes the broker (SIGSTOP, SIGCONT on exit): it keeps
its in-memory log, connections stay open and requests go unanswered until the client's
timeout. ``verify_rebuild()`` stops the API and workers and runs ``touchstream replay``
against the same broker and Redis.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.support.runtimes import register_runtime, run_replay
from tests.support.server import TEST_KEYS, Keys, settings_under_test
from tools.stack import Stack

__all__ = ["KafkaRuntime", "kafka_runtime", "KAFKA_TEST_SETTINGS", "WORKERS"]

WORKERS = 1
KAFKA_TEST_SETTINGS = {
    "TOUCHSTREAM_KAFKA_PARTITIONS": "4",
    "TOUCHSTREAM_KAFKA_REQUEST_TIMEOUT_MS": "2000",
    "TOUCHSTREAM_KAFKA_FETCH_MAX_WAIT_MS": "10",
    # a new group's join waits half of it on Tansu, but a shorter session lets a worker
    # busy folding a large batch (the CDNOW history) miss heartbeats, leave the group and
    # never finish a batch: 6 s
    "TOUCHSTREAM_KAFKA_SESSION_TIMEOUT_SECONDS": "6",
    "TOUCHSTREAM_KAFKA_HEARTBEAT_SECONDS": "0.5",
}


class KafkaRuntime:
    name = "kafka"

    def __init__(self, stack: Stack, keys: Keys):
        self.stack = stack
        self.keys = keys
        self._client: httpx.Client | None = None
        self._down_on_purpose = False  # after kill() or stop(), until restart()

    @property
    def base_url(self) -> str:
        return self.stack.api_url

    @property
    def client(self) -> httpx.Client:
        """An HTTP client for the current API process (no credentials: tests pass a key)."""
        if self._client is None:
            self._client = httpx.Client(base_url=self.base_url, timeout=httpx.Timeout(30.0, connect=5.0))
        return self._client

    def kill(self) -> None:
        self._down_on_purpose = True
        self._drop_client()
        self.stack.kill_processes()

    def stop(self) -> None:
        self._down_on_purpose = True
        self._drop_client()
        codes = self.stack.stop_processes()
        # uvicorn re-raises the SIGTERM it handled; faust exits 0; -9 = ignored SIGTERM
        failed = {name: code for name, code in codes.items() if code not in (0, -signal.SIGTERM, None)}
        assert not failed, f"graceful stop exited with {failed}:\n" + "\n".join(
            f"--- {p.name}:\n{p.tail(40)}" for p in (self.stack.api, *self.stack.workers) if p.name in failed)

    def restart(self) -> None:
        if any(p.running for p in (self.stack.api, *self.stack.workers)):
            self.stop()
        self._drop_client()
        self.stack.start_processes()
        self._down_on_purpose = False

    def crashes(self) -> str:
        """What the API or a worker said before exiting on its own (empty if none did):
        a scenario failing on a 503 then tells why."""
        if self._down_on_purpose:
            return ""
        return "\n".join(f"{p.name} exited with {p.process.returncode if p.process else None} during the scenario; "
                         f"last lines of {p.log_path}:\n{p.tail(40)}" for p in self.stack.exited())

    def log_text(self) -> str:
        return self.stack.log_text()

    @contextmanager
    def storage_unavailable(self) -> Iterator[None]:
        """Freeze the broker: it keeps its data, answers nothing, and thaws on exit."""
        pid = self.stack.broker.pid
        assert pid is not None and self.stack.broker.running, "the broker is not running"
        freeze(pid)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)

    @contextmanager
    def views_paused(self) -> Iterator[None]:
        """Freeze the workers: ingest goes on, the views fall behind; they thaw on exit."""
        pids = [w.pid for w in self.stack.workers if w.pid is not None]
        for pid in pids:
            freeze(pid)
        try:
            yield
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)

    def verify_rebuild(self) -> dict[str, Any]:
        """Stop the API and workers, then ``touchstream replay`` on the same broker and Redis."""
        self.stop()
        return run_replay(self.stack.environment(), timeout=180)

    def _drop_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def freeze(pid: int, bound: float = 5.0) -> None:
    """SIGSTOP ``pid`` and return once every one of its threads is stopped: ``kill``
    returns before the kernel has stopped a busy thread, and a request sent in between
    could still be answered."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + bound
    while not all(_thread_state(task) in ("T", "t", "X", "Z", "") for task in Path(f"/proc/{pid}/task").glob("*")):
        if time.monotonic() > deadline:
            raise AssertionError(f"process {pid} not stopped {bound:g} s after SIGSTOP")
        time.sleep(0.001)


def _thread_state(task: Path) -> str:
    try:
        stat = (task / "stat").read_text()
    except OSError:  # the thread ended
        return ""
    return stat[stat.rindex(")") + 2:].split(" ", 1)[0]


@contextmanager
def kafka_runtime(data_dir: Path, settings: Mapping[str, str]) -> Iterator[KafkaRuntime]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TOUCHSTREAM_")}
    stack = Stack(data_dir, workers=WORKERS, api_port=0, environment=environment,
                  settings={**settings_under_test(TEST_KEYS), **KAFKA_TEST_SETTINGS, **settings}, redis_cluster=True)
    runtime = KafkaRuntime(stack, TEST_KEYS)
    try:
        stack.start()
        try:
            yield runtime
        except BaseException as failure:
            if crashed := runtime.crashes():
                failure.add_note(crashed)
            raise
        if crashed := runtime.crashes():
            raise AssertionError(crashed)
    finally:
        runtime._drop_client()
        stack.stop()


register_runtime("kafka", kafka_runtime)
