"""One Touchstream process of the local stack: the API or a view worker, as a child.

``StackProcess`` runs ``python -m services.cli <command>`` in a session of its own (a
Ctrl-C in the terminal reaches only ``touchstream up``, which stops the stack in order),
appends its stdout and stderr to one log file (never a pipe, which would block a chatty
process), answers whether it is ready from its ``/readyz``, and stops with SIGTERM, then
SIGKILL past a bound. ``stop_pid`` does the same for a process known only by its pid
(``touchstream down``), after checking by its start time that the pid is still that process.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["StackProcess", "alive", "started_at", "stop_pids", "tail"]

STOP_TIMEOUT_SECONDS = 20.0


def tail(path: Path, lines: int = 25) -> str:
    """The last lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


class StackProcess:
    def __init__(self, name: str, command: Sequence[str], env: Mapping[str, str], log_path: Path,
                 host: str, port: int):
        self.name = name
        self.argv = [sys.executable, "-m", "services.cli", *command]
        self.env = dict(env)
        self.log_path = log_path
        self.host = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 - probing, not binding
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        self.readiness: dict[str, Any] = {}

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"--- {self.name} started {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode())
            log.flush()
            self.process = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def probe(self) -> tuple[int, str]:
        """(status, body) of GET /readyz; (0, reason) when nothing answers."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=2.0)
        try:
            connection.request("GET", "/readyz")
            answer = connection.getresponse()
            body = answer.read().decode(errors="replace")
        except (OSError, http.client.HTTPException) as error:
            return 0, repr(error)
        finally:
            connection.close()
        if answer.status == 200:
            try:
                self.readiness = json.loads(body)
            except ValueError:
                self.readiness = {}
        return answer.status, body

    def signal(self, signum: int) -> None:
        if self.running:
            assert self.process is not None
            self.process.send_signal(signum)

    def wait(self, timeout: float) -> int | None:
        """The exit code (None if never started); SIGKILL past ``timeout`` (then -9)."""
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def kill(self) -> None:
        self.signal(signal.SIGCONT)  # harmless, and a stopped process then dies at once
        self.signal(signal.SIGKILL)
        self.wait(10)

    def tail(self, lines: int = 25) -> str:
        return tail(self.log_path, lines)


def started_at(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot; None without /proc):
    with the pid, it names one process, whatever pid reuse happens later."""
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError):
        return None


def alive(pid: int, started: str | None = None) -> bool:
    """True while ``pid`` runs (not a zombie) and, where /proc tells, is the process that
    started at ``started`` (``started_at`` when it was recorded)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or the pid now belongs to someone else
        return False
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return Path("/proc/self").exists() is False  # no /proc at all: trust the pid
    except OSError:
        return False
    return fields[0] != "Z" and (started is None or fields[19] == started)


def stop_pids(entries: Sequence[tuple[int, str | None]], timeout: float = STOP_TIMEOUT_SECONDS) -> list[int]:
    """SIGTERM every (pid, start time) still running, wait up to ``timeout``, SIGKILL the
    rest; the pids that had to be killed."""
    running = [(pid, started) for pid, started in entries if alive(pid, started)]
    for pid, _ in running:
        _send(pid, signal.SIGCONT)
        _send(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(alive(*entry) for entry in running) and time.monotonic() < deadline:
        time.sleep(0.05)
    killed = [pid for pid, started in running if alive(pid, started)]
    for pid in killed:
        _send(pid, signal.SIGKILL)
    return killed


def _send(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
