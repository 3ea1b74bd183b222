"""The runtimes the behavioural scenario suite runs against, by name.

A runtime factory takes a private data directory and settings (``TOUCHSTREAM_*``
environment variables, as strings) and is a context manager yielding a started runtime:
an object with

* ``name``, ``base_url``, ``client`` (an ``httpx.Client`` on ``base_url``, no credentials)
  and ``keys`` (``.admin``, ``.ingest``, ``.read``);
* ``kill()`` (crash every process of the runtime), ``stop()`` (graceful), ``restart()``
  (start again on the same durable state, after a kill or a stop);
* ``log_text()``: everything its processes logged (the no-PII check reads it);
* ``storage_unavailable()``: a context manager during which the runtime's durable
  storage refuses writes (a runtime that cannot simulate it calls ``pytest.skip``);
* ``verify_rebuild()``: stop, rebuild every view from the durable log, and return the
  report (``{"identical": bool, ...}``, plus ``"exit_code"``).

The embedded runtime is registered here; another module registers the scale-out one with
``register_runtime("kafka", factory)`` and is imported by ``tests/e2e/conftest.py``.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

import httpx

from tests.support.server import REPO_ROOT, Keys, RunningServer

__all__ = ["Runtime", "RuntimeFactory", "RUNTIMES", "register_runtime", "embedded_runtime", "EmbeddedRuntime",
           "run_replay"]


class Runtime(Protocol):
    name: str
    keys: Keys

    @property
    def base_url(self) -> str: ...

    @property
    def client(self) -> httpx.Client: ...

    def kill(self) -> None: ...

    def stop(self) -> None: ...

    def restart(self) -> None: ...

    def log_text(self) -> str: ...

    def storage_unavailable(self) -> AbstractContextManager[None]: ...

    def views_paused(self) -> AbstractContextManager[None]: ...

    def verify_rebuild(self) -> dict[str, Any]: ...


RuntimeFactory = Callable[[Path, Mapping[str, str]], AbstractContextManager[Runtime]]

RUNTIMES: dict[str, RuntimeFactory] = {}


def register_runtime(name: str, factory: RuntimeFactory) -> None:
    RUNTIMES[name] = factory


class EmbeddedRuntime:
    """``touchstream run``: one process, SQLite log and views in the data directory."""

    name = "embedded"

    def __init__(self, server: RunningServer):
        self.server = server
        self.keys = server.keys

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def client(self) -> httpx.Client:
        return self.server.client

    @property
    def data_dir(self) -> Path:
        return self.server.data_dir

    def kill(self) -> None:
        self.server.kill()

    def stop(self) -> None:
        code = self.server.stop()
        # uvicorn shuts down gracefully, then re-raises the signal it caught: -SIGTERM
        assert code in (0, -signal.SIGTERM, None), f"graceful stop exited with {code}:\n{self.server.recent_stderr()}"

    def restart(self) -> None:
        self.server.restart()

    def log_text(self) -> str:
        return self.server.log_text()

    def storage_unavailable(self) -> AbstractContextManager[None]:
        """Hold an exclusive lock on the log database: the server cannot write it."""
        return _locked(self.data_dir / "log.sqlite", "EXCLUSIVE")

    def views_paused(self) -> AbstractContextManager[None]:
        """Hold a write lock on the views database: ingest goes on, the views fall behind."""
        return _locked(self.data_dir / "views.sqlite", "IMMEDIATE")

    def verify_rebuild(self) -> dict[str, Any]:
        """Stop the server, then ``touchstream replay`` on its data directory."""
        self.stop()
        return run_replay(self.server.environment(), timeout=120)


@contextmanager
def _locked(database: Path, mode: str) -> Iterator[None]:
    """A transaction held open on ``database`` (``BEGIN {mode}``), rolled back on exit."""
    connection = sqlite3.connect(database, isolation_level=None, timeout=10)
    try:
        connection.execute(f"BEGIN {mode}")
        yield
    finally:
        try:
            connection.execute("ROLLBACK")
        finally:
            connection.close()


def run_replay(environment: Mapping[str, str], *, timeout: float) -> dict[str, Any]:
    """``touchstream replay`` with these settings: its JSON report plus ``exit_code``."""
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "replay"],
        cwd=REPO_ROOT,
        env=dict(environment),
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        raise AssertionError(
            f"replay printed no JSON (exit {done.returncode}):\nstdout: {done.stdout[-3000:]!r}\n"
            f"stderr: {done.stderr[-3000:]!r}"
        ) from None
    report["exit_code"] = done.returncode
    return report


@contextmanager
def embedded_runtime(data_dir: Path, settings: Mapping[str, str]) -> Iterator[EmbeddedRuntime]:
    server = RunningServer(data_dir, settings)
    try:
        server.start()
        yield EmbeddedRuntime(server)
    finally:
        server.close()


register_runtime("embedded", embedded_runtime)
