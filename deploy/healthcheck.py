"""The image's health probe: ``GET /healthz`` on the port of the role this container runs.

One image serves every role: ``touchstream run`` answers on ``Settings.port``,
``touchstream worker`` on ``Settings.worker_web_port``. The role is read from the command
line of the container's first process and the port from the same settings the service
started with, so the probe cannot drift from the service. Exit status 0 = healthy,
1 = not (Docker's HEALTHCHECK contract).
"""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

from services.settings import Settings

__all__ = ["probe_url"]


def probe_url(command_line: list[str], settings: Settings) -> str:
    """The URL that says whether the service started by ``command_line`` is alive."""
    port = settings.worker_web_port if "worker" in command_line[1:] else settings.port
    return f"http://127.0.0.1:{port}/healthz"


def main() -> int:
    command_line = Path("/proc/1/cmdline").read_bytes().decode().split("\0")
    try:
        with urllib.request.urlopen(probe_url(command_line, Settings()), timeout=3) as response:
            return 0 if response.status == 200 else 1
    except OSError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
