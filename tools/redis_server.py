"""A private redis-server on loopback: for ``touchstream up`` and for tests.

``RedisServer`` starts ``redis-server --port P --bind 127.0.0.1`` on a free loopback port
(or the one given) in a directory of its own (a temporary one unless ``directory`` is
given), with its log in a file (never a pipe, which would block a chatty server), waits
until PING answers, and stops it with SHUTDOWN NOSAVE (then SIGTERM, then SIGKILL).
``start()`` after ``stop()`` restarts it on the same port; ``close()`` also removes a
temporary directory. The binary is the Debian package ``redis-server``
(``/usr/bin/redis-server``) or the first one on PATH.

Persistence: none by default (``--save '' --appendonly no``: a restart is empty);
``durable=True`` turns on the append-only file, fsynced on every write (how a Redis that
holds positions of record is run), so ``kill()`` (SIGKILL, a crash) then ``start()``
brings the same data back. ``pause()``/``resume()`` (SIGSTOP/SIGCONT) freeze the server
with its connections open: clients time out, and what they had sent runs when it resumes.

``cluster=True`` runs it as a one-node Redis Cluster owning every slot: it answers like a
plain server, but refuses any script, MULTI/EXEC or multi-key command whose keys are not
all in one hash slot (CROSSSLOT), as every node of a real cluster does. The scenario suite
runs the scale-out runtime on it, so a call that could not run on a cluster fails there.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tools.bench.server import free_port

__all__ = ["RedisServer", "RedisServerFailed", "redis_server_binary"]

READY_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 5.0
DEFAULT_BINARY = "/usr/bin/redis-server"


class RedisServerFailed(RuntimeError):
    """redis-server is missing or did not answer PING in time; the message ends with its log."""


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
    def __init__(self, binary: str | None = None, *, port: int = 0, durable: bool = False,
                 directory: Path | None = None, log_path: Path | None = None, cluster: bool = False):
        """``port`` 0 picks a free port at the first start; ``stop()`` then ``start()``
        restarts the server on the same port: empty, or with its data when ``durable``."""
        self.binary = binary or redis_server_binary()
        self.port = port
        self.durable = durable
        self.cluster = cluster
        self.cluster_port = 0  # the cluster bus: a free port of its own (the default, port + 10000, may be taken)
        self._temporary = directory is None
        self.directory = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="touchstream-redis-"))
        self.log_path = Path(log_path) if log_path else self.directory / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self, *, new_session: bool = False) -> RedisServer:
        """``new_session``: the server does not share the caller's terminal signals (Ctrl-C)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        attempts = 1 if self.port else 3  # a free port can be taken between probe and bind
        for _ in range(attempts):
            if attempts > 1:
                self.port = free_port()
            with open(self.log_path, "ab") as log:
                self._process = subprocess.Popen(
                    [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                     *(["--appendonly", "yes", "--appendfsync", "always"] if self.durable else
                       ["--appendonly", "no"]),
                     *(["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{self.port}.conf",
                        "--cluster-port", str(self._bus_port())] if self.cluster else []),
                     "--dir", str(self.directory.resolve()), "--daemonize", "no"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=new_session,
                )
            if self._wait_ready() and (not self.cluster or self._own_every_slot()):
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

    def _bus_port(self) -> int:
        """The cluster bus port, chosen once: a node restarted keeps it."""
        if not self.cluster_port:
            self.cluster_port = free_port()
        return self.cluster_port

    def _own_every_slot(self) -> bool:
        """A one-node cluster: assign every slot to this node (kept in its nodes file on a
        restart) and wait until the cluster state is ok."""
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)
        try:
            if int(client.cluster("INFO")["cluster_slots_assigned"]) != 16384:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
            deadline = time.monotonic() + READY_TIMEOUT_SECONDS
            while time.monotonic() < deadline:
                if client.cluster("INFO")["cluster_state"] == "ok":
                    return True
                time.sleep(0.05)
        finally:
            client.close()
        self._terminate(grace=0.0)
        return False

    def stop(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self.resume()
            try:
                _command(self.port, "SHUTDOWN", "NOSAVE")
            except OSError:
                pass
            self._terminate()
        self._process = None

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed beyond what was already fsynced."""
        if self._process is None:
            return
        self.resume()  # a stopped process dies of SIGKILL too, but be plain about it
        self._process.kill()
        self._process.wait()
        self._process = None

    def pause(self) -> None:
        """SIGSTOP: the server hangs, connections stay open, requests wait unanswered."""
        assert self._process is not None and self._process.poll() is None, "redis-server is not running"
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after ``pause()`` (harmless otherwise)."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.stop()
        if self._temporary:
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
