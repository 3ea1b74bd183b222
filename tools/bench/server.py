"""A real Touchstream server process on a free loopback port, for benchmarks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

__all__ = ["LocalServer", "free_port", "BENCH_KEY"]

BENCH_KEY = "bench-admin-key-0001"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalServer:
    def __init__(self, data_dir: Path, ready_seconds: float = 30, **settings: str):
        self.data_dir, self.port, self.ready_seconds = data_dir, free_port(), ready_seconds
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "TOUCHSTREAM_DATA_DIR": str(data_dir), "TOUCHSTREAM_LOG_LEVEL": "warning",
                    "TOUCHSTREAM_API_KEYS": json.dumps({BENCH_KEY: ["admin"]}),
                    "TOUCHSTREAM_RATE_LIMIT_PER_SECOND": "1000000", "TOUCHSTREAM_RATE_LIMIT_BURST": "1000000",
                    **{f"TOUCHSTREAM_{k.upper()}": v for k, v in settings.items()}}
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LocalServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "run", "--port", str(self.port)],
            env=self.env, stdout=log, stderr=log, cwd=Path(__file__).resolve().parents[2],
        )
        deadline = time.monotonic() + self.ready_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {(self.data_dir / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(self.base_url + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready within {self.ready_seconds} s")

    def views_at(self, position: int, timeout: float = 300) -> float:
        """Poll until the views include ``position``; returns the monotonic time it happened."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if httpx.get(self.base_url + "/readyz", timeout=5).json()["view_position"] >= position:
                return time.monotonic()
            time.sleep(0.005)
        raise TimeoutError(f"views did not reach {position}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
