"""The local scale-out stack: broker, Redis, view workers and the API on one machine.

``Stack(data_dir, workers=N, api_port=8080, settings={...})`` runs, under
``data_dir/stack/``, a Tansu broker, a private redis-server, N ``touchstream worker``
processes and ``touchstream run`` with ``TOUCHSTREAM_RUNTIME=kafka``, each logging to a
file in ``data_dir/stack/logs/``. ``start()`` waits, bounded, until each is ready (the
broker answers Metadata, Redis PING, the API ``/readyz``, and the workers ``/readyz`` with
every partition owned by exactly one of them) and writes ``stack.json`` (pids, ports,
bootstrap, Redis URL, API URL) for ``touchstream down``. ``stop()`` stops them in order:
API, workers, broker, Redis. ``StackFailed`` quotes the last log lines of the process at
fault.

The broker keeps its data in memory: the Tansu build we ship has no durable storage
engine (only ``memory://`` and ``s3://``). Redis therefore runs without persistence too —
views kept across a restart would describe a log the fresh broker no longer has.

Settings: the children inherit the caller's environment (``TOUCHSTREAM_*`` included)
over defaults tuned for Tansu (10 ms fetch wait, 6 s session, 0.5 s heartbeat), then
``settings``; the stack owns the runtime, addresses, ports and data directories.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from services.settings import Settings
from tools.bench.server import free_port
from tools.redis_server import RedisServer
from tools.stack_process import StackProcess, started_at
from tools.tansu import TansuBroker

__all__ = ["Stack", "StackFailed", "TANSU_SETTINGS", "manifest_path"]

READY_TIMEOUT_SECONDS = 90.0  # a worker restarted after a crash may wait ~11 s for the group, more on a busy machine
API_STOP_SECONDS = 15.0
WORKER_STOP_SECONDS = 20.0

TANSU_SETTINGS = {
    "TOUCHSTREAM_KAFKA_FETCH_MAX_WAIT_MS": "10",  # Tansu holds an empty fetch for the whole wait
    "TOUCHSTREAM_KAFKA_SESSION_TIMEOUT_SECONDS": "6",  # a group join takes half the session
    "TOUCHSTREAM_KAFKA_HEARTBEAT_SECONDS": "0.5",
}


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


class StackFailed(RuntimeError):
    """A process of the stack did not become ready; the message ends with its last log lines."""


def manifest_path(data_dir: Path) -> Path:
    return Path(data_dir) / "stack" / "stack.json"


def restart_request(data_dir: Path, name: str) -> Path:
    """The file `touchstream restart NAME` leaves for the supervisor (removed once done)."""
    return Path(data_dir) / "stack" / f"restart-{name}"


class Stack:
    def __init__(self, data_dir: Path, *, workers: int = 2, api_port: int = 8080,
                 settings: Mapping[str, str] | None = None, environment: Mapping[str, str] | None = None,
                 redis_cluster: bool = False):
        """``api_port`` 0 picks a free port; ``environment`` replaces ``os.environ`` as
        what the children inherit; ``redis_cluster``: Redis runs as a one-node cluster
        (it refuses every cross-slot call, as a real cluster does)."""
        self.data_dir = Path(data_dir).resolve()
        self.directory = self.data_dir / "stack"
        self.logs = self.directory / "logs"
        inherited = dict(os.environ if environment is None else environment)
        self._base = {k: v for k, v in inherited.items() if not k.startswith("TOUCHSTREAM_")}
        self._settings = {**TANSU_SETTINGS, **{k: v for k, v in inherited.items() if k.startswith("TOUCHSTREAM_")},
                          **(settings or {})}
        self.partitions = int(self._settings.get("TOUCHSTREAM_KAFKA_PARTITIONS",
                                                 Settings.model_fields["kafka_partitions"].default))
        self.host = self._settings.get("TOUCHSTREAM_HOST", "127.0.0.1")
        self.supervisor: int | None = None  # the pid of `touchstream up` supervising the stack, if any
        self.broker = TansuBroker(directory=self.logs)
        self.redis = RedisServer(directory=self.directory / "redis", log_path=self.logs / "redis.log",
                                 cluster=redis_cluster)
        api_port = api_port or free_port()
        self.api = StackProcess("api", ["run", "--host", self.host, "--port", str(api_port)], {},
                                self.logs / "api.log", self.host, api_port)
        self.workers = [StackProcess(f"worker-{n}", ["worker"], {}, self.logs / f"worker-{n}.log",
                                     "127.0.0.1", free_port()) for n in range(1, workers + 1)]

    def reconfigure(self, settings: Mapping[str, str]) -> None:
        """Settings for the API and workers started next (their processes are not touched:
        stop them first); how a stack moves to a new generation (`touchstream repartition`)."""
        self._settings.update(settings)
        self.partitions = int(self._settings.get("TOUCHSTREAM_KAFKA_PARTITIONS",
                                                 Settings.model_fields["kafka_partitions"].default))

    # -- addresses ---------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        return f"http://{self.api.host}:{self.api.port}"

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    @property
    def redis_url(self) -> str:
        return self.redis.url

    def environment(self, data_dir: Path | None = None) -> dict[str, str]:
        """What a Touchstream process of this stack runs with (``touchstream replay`` too)."""
        return {**self._base, **self._settings, "PYTHONUNBUFFERED": "1", "TOUCHSTREAM_RUNTIME": "kafka",
                "TOUCHSTREAM_KAFKA_BOOTSTRAP": self.bootstrap, "TOUCHSTREAM_REDIS_URL": self.redis_url,
                "TOUCHSTREAM_DATA_DIR": str(data_dir or self.data_dir)}

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Stack:
        """Broker, Redis, then workers and API together; stops what started if one fails."""
        if not _port_is_free(self.api.host, self.api.port):
            raise StackFailed(f"port {self.api.port} on {self.api.host} is taken: the API could not listen there")
        try:
            self.logs.mkdir(parents=True, exist_ok=True)
            self.broker.start(new_session=True)
            self.redis.start(new_session=True)
            self.start_processes()
        except BaseException:
            self.stop()
            raise
        return self

    def start_processes(self) -> None:
        """Start (again) the API and the workers on the running broker and Redis, and wait
        until all are ready; on failure, what this started is stopped again."""
        self.api.env = {**self.environment(), "TOUCHSTREAM_HOST": self.host, "TOUCHSTREAM_PORT": str(self.api.port)}
        for worker in self.workers:
            worker.env = {**self.environment(self.directory / worker.name), "TOUCHSTREAM_WORKER_HOST": "127.0.0.1",
                          "TOUCHSTREAM_WORKER_WEB_PORT": str(worker.port)}
        try:
            for process in (*self.workers, self.api):
                process.spawn()
            self.write_manifest()  # before the wait: `touchstream down` can stop a start gone wrong
            self._wait_ready()
        except BaseException:
            self.kill_processes()
            raise

    def stop_processes(self) -> dict[str, int | None]:
        """SIGTERM the API, then the workers (SIGKILL past a bound); their exit codes
        (-9: had to be killed; None: never started)."""
        codes = {}
        for group, bound in (([self.api], API_STOP_SECONDS), (self.workers, WORKER_STOP_SECONDS)):
            for process in group:
                process.signal(signal.SIGCONT)
                process.signal(signal.SIGTERM)
            for process in group:
                codes[process.name] = process.wait(bound)
        return codes

    def kill_processes(self) -> None:
        """SIGKILL the API and the workers: a crash. Broker and Redis stay up."""
        for process in (self.api, *self.workers):
            process.kill()

    def stop(self) -> dict[str, int | None]:
        """Stop everything in order (API, workers, broker, Redis) and forget ``stack.json``."""
        try:
            return self.stop_processes()
        finally:
            try:
                self.broker.stop()
            finally:
                self.redis.stop()
                manifest_path(self.data_dir).unlink(missing_ok=True)

    def exited(self) -> list[StackProcess]:
        """The API and workers that exited by themselves."""
        return [p for p in (self.api, *self.workers) if p.process is not None and not p.running]

    def log_text(self) -> str:
        """Everything the API and the workers logged, over all their starts."""
        return "\n".join(p.log_path.read_text(errors="replace") for p in (self.api, *self.workers)
                         if p.log_path.exists())

    # -- readiness ---------------------------------------------------------------------------
    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        pending: list[StackProcess] = [self.api, *self.workers]
        last: dict[str, str] = {}
        while True:
            for process in pending:
                if not process.running:
                    raise StackFailed(f"{process.name} exited with {process.process.returncode if process.process else None}"
                                      f" before it was ready; last lines of {process.log_path}:\n{process.tail()}")
                status, body = process.probe()
                last[process.name] = f"{status} {body[:300]}"
            pending = [p for p in pending if not last[p.name].startswith("200 ")]
            if not pending and self._partitions_settled():
                return
            if time.monotonic() > deadline:
                culprit = pending[0] if pending else self.workers[0]
                raise StackFailed(
                    f"{', '.join(p.name for p in pending) or 'the worker group'} not ready within "
                    f"{READY_TIMEOUT_SECONDS:.0f} s (last answers: {last}); last lines of "
                    f"{culprit.log_path}:\n{culprit.tail()}")
            if not pending:
                pending = list(self.workers)  # ready, but the group is still rebalancing: ask again
            time.sleep(0.1)

    def _partitions_settled(self) -> bool:
        """Every partition is owned by exactly one worker: the group has settled."""
        if not self.workers:
            return True
        owned = [p for w in self.workers for p in w.readiness.get("partitions", [])]
        return sorted(owned) == list(range(self.partitions))

    # -- stack.json --------------------------------------------------------------------------
    def write_manifest(self) -> None:
        entries: Iterable[tuple[str, int | None, int, Path]] = (
            (self.api.name, self.api.pid, self.api.port, self.api.log_path),
            *((w.name, w.pid, w.port, w.log_path) for w in self.workers),
            ("broker", self.broker.pid, self.broker.port, self.broker.log_path),
            ("redis", self.redis.pid, self.redis.port, self.redis.log_path),
        )
        manifest: dict[str, Any] = {
            "api_url": self.api_url, "bootstrap": self.bootstrap, "redis_url": self.redis_url,
            "data_dir": str(self.data_dir), "partitions": self.partitions,
            "workers": [f"http://127.0.0.1:{w.port}" for w in self.workers],
            # in stop order
            "processes": [{"name": name, "pid": pid, "started_at": started_at(pid) if pid else None,
                           "port": port, "log": str(log)} for name, pid, port, log in entries],
        }
        if self.supervisor is not None:
            manifest["supervisor"] = {"pid": self.supervisor, "started_at": started_at(self.supervisor)}
        path = manifest_path(self.data_dir)
        partial = path.with_suffix(".json.partial")
        partial.write_text(json.dumps(manifest, indent=2) + "\n")
        partial.replace(path)  # readers never see half a file

    def restart_requested(self) -> list[StackProcess]:
        """The API or workers `touchstream restart` asked to restart."""
        return [p for p in (self.api, *self.workers) if restart_request(self.data_dir, p.name).exists()]

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
