"""A private redis-server for integration tests, or the one ``REDIS_URL`` names.

``RedisServer`` starts ``redis-server --port P --bind 127.0.0.1 --save '' --appendonly no``
on a free loopback port, in a private directory, with its log in a file there (never a
pipe), waits until PING answers and stops it with SHUTDOWN NOSAVE (then SIGTERM, then
SIGKILL); ``start()`` after ``stop()`` restarts it, empty, on the same port; ``close()``
also removes its directory. The binary is the Debian package ``redis-server``
(``/usr/bin/redis-server``).

``unique_prefix()`` gives each test its own key prefix; ``delete_prefix(url, prefix)``
removes a test's keys afterwards (useful when ``REDIS_URL`` points at a shared server).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from services.bench.server import free_port

__all__ = ["RedisServer", "RedisServerFailed", "redis_server_binary", "unique_prefix", "delete_prefix", "free_port"]

READY_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 5.0
DEFAULT_BINARY = "/usr/bin/redis-server"


class RedisServerFailed(RuntimeError):
    pass


def redis_server_binary() -> str:
    if os.access(DEFAULT_BINARY, os.X_OK):
        return DEFAULT_BINARY
    found = shutil.which("redis-server")
    if found is None:
        raise RedisServerFailed(
            f"redis-server not found (looked at {DEFAULT_BINARY} and on PATH): install the Debian package "
            "`redis-server` (apt-get install redis-server), or set REDIS_URL to a running Redis"
        )
    return found




def _command(port: int, *words: str, timeout: float = 1.0) -> bytes:
    """Send one inline command to 127.0.0.1:port; the first reply line ('' if closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall((" ".join(words) + "\r\n").encode())
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = s.recv(256)
            if not chunk:
                break
            reply += chunk
        return reply


class RedisServer:
    def __init__(self, binary: str | None = None, *, port: int = 0):
        """``port`` 0 picks a free port at the first start; ``stop()`` then ``start()``
        restarts the server (empty) on the same port."""
        self.binary = binary or redis_server_binary()
        self.port = port
        self.directory = Path(tempfile.mkdtemp(prefix="touchstream-redis-"))
        self.log_path = self.directory / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        attempts = 1 if self.port else 3  # a free port can be taken between probe and bind
        for _ in range(attempts):
            if attempts > 1:
                self.port = free_port()
            with open(self.log_path, "ab") as log:
                self._process = subprocess.Popen(
                    [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", "--dir", str(self.directory), "--daemonize", "no"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                )
            if self._wait_ready():
                return self
        raise RedisServerFailed(
            f"redis-server on port {self.port} did not answer PING within {READY_TIMEOUT_SECONDS}s; log:\n{self._log()}"
        )

    def _wait_ready(self) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False  # exited (port taken?): try another port
            try:
                if _command(self.port, "PING").startswith(b"+PONG"):
                    return True
            except OSError:
                pass
            time.sleep(0.02)
        self._terminate(grace=0.0)
        return False

    def stop(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            try:
                _command(self.port, "SHUTDOWN", "NOSAVE")
            except OSError:
                pass
            self._terminate()
        self._process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _terminate(self, grace: float = STOP_TIMEOUT_SECONDS) -> None:
        """Wait ``grace`` seconds for the process to exit, then SIGTERM, then SIGKILL."""
        assert self._process is not None
        try:
            self._process.wait(grace)
        except subprocess.TimeoutExpired:
            self._process.terminate()
            try:
                self._process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def _log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def unique_prefix() -> str:
    return f"ts-test-{uuid.uuid4().hex[:12]}"


def delete_prefix(url: str, prefix: str) -> None:
    """Delete every key under ``prefix:`` (SCAN + UNLINK)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
    try:
        batch = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for i in range(0, len(batch), 500):
            client.unlink(*batch[i : i + 500])
    finally:
        client.close()
