"""A real Touchstream server process on loopback, for end-to-end tests.

``RunningServer`` starts ``python -m services.cli run --port <free port>`` from the
repository root with a private data directory and test API keys and form, waits until
``/readyz`` answers 200, and can stop (SIGTERM), kill (SIGKILL) and restart the process
on the same data directory. The server's stdout and stderr go to files in the data
directory (never a pipe, which would block a chatty server).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tools.bench.server import free_port

__all__ = [
    "REPO_ROOT",
    "port_is_free",
    "Keys",
    "TEST_KEYS",
    "FORM_ID",
    "FORM_PUBLIC_KEY",
    "FORM_ORIGIN",
    "FORM_THANK_YOU_URL",
    "RunningServer",
    "ServerFailed",
    "free_port",
    "settings_under_test",
]

REPO_ROOT = Path(__file__).resolve().parents[2]

READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 20.0


@dataclass(frozen=True)
class Keys:
    """One API key per scope the tests need."""

    admin: str
    ingest: str
    read: str

    def scopes(self) -> dict[str, list[str]]:
        return {self.admin: ["admin"], self.ingest: ["ingest"], self.read: ["read"]}


TEST_KEYS = Keys(admin="ts-e2e-admin-key-0001", ingest="ts-e2e-ingest-key-0001", read="ts-e2e-read-key-0001")

FORM_ID = "contact"
FORM_PUBLIC_KEY = "pk_contact_test_1"
FORM_ORIGIN = "https://shop.example"
FORM_THANK_YOU_URL = "https://shop.example/thanks"


def settings_under_test(keys: Keys = TEST_KEYS) -> dict[str, str]:
    """The settings every runtime under test runs with: the test keys and form, quiet logs."""
    return {
        "TOUCHSTREAM_API_KEYS": json.dumps(keys.scopes()),
        "TOUCHSTREAM_FORMS": json.dumps(
            {FORM_ID: {"public_key": FORM_PUBLIC_KEY, "origins": [FORM_ORIGIN], "thank_you_url": FORM_THANK_YOU_URL}}
        ),
        "TOUCHSTREAM_LOG_LEVEL": "warning",
        # The journey dates events hours after the form the server stamps "now".
        "TOUCHSTREAM_MAX_FUTURE_SECONDS": "86400",
        "TOUCHSTREAM_CLOCK_TICK_SECONDS": "0",  # tests post their own ticks: time is what the test says
        "TOUCHSTREAM_VALUE_REFIT_SECONDS": "0",  # and refit the purchase model when they mean to
    }


class ServerFailed(RuntimeError):
    """The server process did not come up (or died); the message carries its stderr."""




def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class RunningServer:
    """The embedded platform as a child process (``touchstream run``)."""

    def __init__(self, data_dir: Path, settings: Mapping[str, str] | None = None, *, keys: Keys = TEST_KEYS):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.keys = keys
        self.overrides = dict(settings or {})
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._client: httpx.Client | None = None
        self.stdout_path = self.data_dir / "server.stdout.log"
        self.stderr_path = self.data_dir / "server.stderr.log"

    # -- configuration ------------------------------------------------------------------
    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOUCHSTREAM_")}
        env.update({"PYTHONUNBUFFERED": "1", "TOUCHSTREAM_DATA_DIR": str(self.data_dir), **settings_under_test(self.keys)})
        env.update(self.overrides)
        return env

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def client(self) -> httpx.Client:
        """An HTTP client for the current process (no credentials: tests pass a key)."""
        if self._client is None:
            self._client = httpx.Client(base_url=self.base_url, timeout=httpx.Timeout(30.0, connect=5.0))
        return self._client

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> RunningServer:
        if self.running:
            raise RuntimeError("the server is already running")
        for attempt in range(3):
            if attempt or not port_is_free(self.port):
                self.port = free_port()
            self._drop_client()
            try:
                self._spawn()
                self._wait_ready()
                return self
            except ServerFailed as failure:
                self._reap()
                if "address already in use" not in str(failure).lower() or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _spawn(self) -> None:
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            err.write(f"\n--- start {time.strftime('%H:%M:%S')} port {self.port} ---\n".encode())
            err.flush()
            self._stderr_offset = self.stderr_path.stat().st_size
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "run", "--port", str(self.port)],
                cwd=REPO_ROOT,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        last = "no answer yet"
        with httpx.Client(base_url=self.base_url, timeout=2.0) as probe:
            while time.monotonic() < deadline:
                assert self.process is not None
                code = self.process.poll()
                if code is not None:
                    raise ServerFailed(f"the server exited with {code} before it was ready:\n{self.recent_stderr()}")
                try:
                    answer = probe.get("/readyz")
                    if answer.status_code == 200:
                        return
                    last = f"{answer.status_code} {answer.text[:300]}"
                except httpx.TransportError as error:
                    last = repr(error)
                time.sleep(0.05)
        raise ServerFailed(
            f"/readyz not 200 within {READY_TIMEOUT_SECONDS} s (last: {last}):\n{self.recent_stderr()}"
        )

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> int | None:
        """SIGTERM and wait for a graceful exit (SIGKILL past ``timeout``); the exit code."""
        self._drop_client()
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
                raise ServerFailed(f"the server ignored SIGTERM for {timeout} s:\n{self.recent_stderr()}") from None
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed, nothing closed."""
        self._drop_client()
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def restart(self) -> RunningServer:
        """Start again on the same data directory (stopping gracefully if still running)."""
        if self.running:
            self.stop()
        return self.start()

    def close(self) -> None:
        try:
            if self.running:
                self.stop()
        finally:
            self._reap()

    def _reap(self) -> None:
        self._drop_client()
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def _drop_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- diagnostics --------------------------------------------------------------------
    def recent_stderr(self, limit: int = 6000) -> str:
        try:
            data = self.stderr_path.read_bytes()[getattr(self, "_stderr_offset", 0):]
        except OSError:
            return "(no stderr file)"
        text = data.decode(errors="replace")
        return text[-limit:]

    def log_text(self) -> str:
        """Everything the process wrote to stdout and stderr, over all its starts."""
        parts = []
        for path in (self.stdout_path, self.stderr_path):
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    def __enter__(self) -> RunningServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()
