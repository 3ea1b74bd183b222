"""``touchstream up`` / ``touchstream down``: the scale-out stack as a developer runs it,
through the installed command, with nothing configured but a data directory."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.api import bearer, call, unique, wait_until
from tests.support.server import port_is_free
from tools.bench.server import free_port
from tools.stack_process import alive

pytestmark = pytest.mark.e2e

TOUCHSTREAM = Path(sys.executable).parent / "touchstream"


def _touchstream(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(TOUCHSTREAM), *args], env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


def test_up_serves_ingest_and_reads_with_two_workers_and_down_leaves_nothing_running(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOUCHSTREAM_")}
    env |= {"TOUCHSTREAM_DATA_DIR": str(data), "TOUCHSTREAM_LOG_LEVEL": "warning"}
    port = free_port()
    processes: list[dict[str, object]] = []
    supervisor: dict[str, Any] = {"pid": 0, "started_at": None}
    try:
        up = _touchstream(env, "up", "--runtime", "kafka", "--workers", "2", "--port", str(port), "--detach")
        assert up.returncode == 0, f"stdout:\n{up.stdout}\nstderr:\n{up.stderr}"
        api_url = re.search(r"API\s+(http://\S+)", up.stdout)
        key = re.search(r"API key\s+(\S+)", up.stdout)
        assert api_url and key, up.stdout
        assert api_url.group(1) == f"http://127.0.0.1:{port}"
        manifest = json.loads((data / "stack" / "stack.json").read_text())
        processes = manifest["processes"]
        assert [p["name"] for p in processes] == ["api", "worker-1", "worker-2", "broker", "redis"]
        assert all(alive(p["pid"], p["started_at"]) for p in processes), processes

        again = _touchstream(env, "up", "--detach", "--port", str(free_port()))
        assert again.returncode == 1 and "already running" in again.stderr, (again.stdout, again.stderr)

        owned = [httpx.get(f"{w}/readyz", timeout=5).json()["partitions"] for w in manifest["workers"]]
        assert all(owned) and sorted(sum(owned, [])) == list(range(manifest["partitions"])), owned

        email = f"stack.{unique()}@example.com"
        event = call(f"stack-{unique()}", datetime(2026, 6, 1, 9, tzinfo=UTC), {"emails": [email]})
        with httpx.Client(base_url=api_url.group(1), headers=bearer(key.group(1)), timeout=30) as client:
            posted = client.post("/v1/events", json=event)
            assert posted.status_code == 202, posted.text
            view = client.get("/v1/customers", params={"email": email, "min_position": posted.json()["position"]})
            assert view.status_code == 200, view.text
            assert view.json()["recent"][0]["event_id"] == event["event_id"]

        # detached, the stack is supervised all the same: a killed worker comes back
        assert "supervisor pid" in up.stdout, up.stdout
        report = json.loads(_touchstream(env, "status", "--json").stdout)
        assert report["supervised"] is True, report
        victim = next(p for p in processes if p["name"] == "worker-1")
        os.kill(int(victim["pid"]), signal.SIGKILL)  # type: ignore[call-overload]

        def back() -> bool:
            current = json.loads((data / "stack" / "stack.json").read_text())["processes"]
            worker = next(p for p in current if p["name"] == "worker-1")
            return worker["pid"] != victim["pid"] and json.loads(_touchstream(env, "status", "--json").stdout)["healthy"]

        wait_until(back, timeout=120, what="the killed worker restarted by the detached supervisor, and ready")
        processes = json.loads((data / "stack" / "stack.json").read_text())["processes"]
        supervisor = json.loads((data / "stack" / "stack.json").read_text())["supervisor"]
    finally:
        down = _touchstream(env, "down", timeout=120)
    assert down.returncode == 0, down.stderr
    assert "killed" not in down.stdout, down.stdout  # every process stopped on SIGTERM
    still = [p for p in processes if alive(p["pid"], p["started_at"])]  # type: ignore[arg-type]
    assert not still, still
    taken = [p["port"] for p in processes if not port_is_free(p["port"])]  # type: ignore[arg-type]
    assert not taken, taken
    assert not (data / "stack" / "stack.json").exists()
    assert not alive(supervisor["pid"], supervisor["started_at"])  # the supervisor stopped the stack and left
    assert "worker-1 exited with -9; restarting it" in (data / "stack" / "logs" / "supervisor.log").read_text()


def test_up_restarts_a_worker_that_was_killed_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    """Supervision: SIGKILL a worker of a foreground `touchstream up`; it is started again
    (stack.json names its new pid, it owns partitions again) and the stack serves on."""
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOUCHSTREAM_")}
    env |= {"TOUCHSTREAM_DATA_DIR": str(data), "TOUCHSTREAM_LOG_LEVEL": "warning",
            # the killed member leaves the group when its session expires: a short one
            "TOUCHSTREAM_KAFKA_SESSION_TIMEOUT_SECONDS": "3", "TOUCHSTREAM_KAFKA_HEARTBEAT_SECONDS": "0.3"}
    manifest_file = data / "stack" / "stack.json"
    up = subprocess.Popen([str(TOUCHSTREAM), "up", "--workers", "1", "--port", str(free_port())], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    processes: list[dict[str, object]] = []
    try:
        def ready_worker() -> dict[str, object] | None:
            if not manifest_file.exists():
                return None
            manifest = json.loads(manifest_file.read_text())
            worker = next(p for p in manifest["processes"] if p["name"] == "worker-1")
            try:
                answer = httpx.get(f"{manifest['workers'][0]}/readyz", timeout=2)
            except httpx.HTTPError:
                return None
            return worker if answer.status_code == 200 and answer.json().get("partitions") else None

        wait_until(lambda: ready_worker() is not None, timeout=90, what="the stack up")
        first = ready_worker()
        assert first is not None
        os.kill(int(first["pid"]), signal.SIGKILL)  # type: ignore[call-overload]
        wait_until(lambda: (w := ready_worker()) is not None and w["pid"] != first["pid"], timeout=120,
                   what="the killed worker started again and ready")
        processes = json.loads(manifest_file.read_text())["processes"]
        assert all(alive(p["pid"], p["started_at"]) for p in processes), processes  # type: ignore[arg-type]

        def status() -> dict[str, Any]:
            done = subprocess.run([str(TOUCHSTREAM), "status", "--json"], env=env, capture_output=True, text=True,
                                  timeout=30)
            report: dict[str, Any] = json.loads(done.stdout)
            assert done.returncode == (0 if report["healthy"] else 1), done
            return report

        wait_until(lambda: status()["healthy"], timeout=30, what="every process running and ready")
        report = status()
        assert report["supervised"] and [p["name"] for p in report["processes"]] == ["api", "worker-1", "broker",
                                                                                  "redis"], report
        api_pid = next(p["pid"] for p in report["processes"] if p["name"] == "api")
        restarted = subprocess.run([str(TOUCHSTREAM), "restart", "api"], env=env, capture_output=True, text=True,
                                   timeout=90)
        assert restarted.returncode == 0 and f"api restarted: pid {api_pid} -> " in restarted.stdout, restarted
        wait_until(lambda: status()["healthy"], timeout=30, what="the restarted API ready")
        unknown = subprocess.run([str(TOUCHSTREAM), "restart", "broker"], env=env, capture_output=True, text=True,
                                 timeout=30)
        assert unknown.returncode == 2 and "restart the stack instead" in unknown.stderr, unknown
        processes = json.loads(manifest_file.read_text())["processes"]
    finally:
        up.send_signal(signal.SIGINT)
        _, err = up.communicate(timeout=120)
    assert "worker-1 exited with -9; restarting it" in err and "worker-1 restarted (restart 1)" in err, err
    assert "restarting api on request" in err, err
    assert up.returncode == 0, err
    still = [p for p in processes if alive(p["pid"], p["started_at"])]  # type: ignore[arg-type]
    assert not still, still
