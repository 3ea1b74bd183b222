"""Generated traffic through a real server process: every event lands once, on its customer."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import httpx
import pytest

from services.traffic import TrafficOptions, labelled, post_http

REPO = Path(__file__).resolve().parents[2]
KEY = "test-key"

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(base: str, process: subprocess.Popen[bytes], logs: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}: {logs.read_text()[-2000:]}")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"the server was not ready within 30 s: {logs.read_text()[-2000:]}")


def test_posted_traffic_is_stored_once_per_event_and_lands_on_the_right_customers(tmp_path: Path) -> None:
    port, logs = free_port(), tmp_path / "server.log"
    env = {**os.environ, "TOUCHSTREAM_DATA_DIR": str(tmp_path / "data"),
           "TOUCHSTREAM_API_KEYS": json.dumps({KEY: ["admin"]}), "TOUCHSTREAM_LOG_LEVEL": "warning"}
    with logs.open("wb") as sink:
        server = subprocess.Popen([sys.executable, "-m", "services.cli", "run", "--port", str(port)], cwd=REPO,
                                  env=env, stdout=sink, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, server, logs)
        batch_size, concurrency = 100, 4
        pairs = list(labelled(TrafficOptions(customers=120, events=2000, seed=11, duplicate_rate=0.02,
                                             late_rate=0.02, link_after=batch_size * concurrency)))
        events = [event for _, event in pairs]
        distinct: dict[str, set[str]] = defaultdict(set)
        for customer_id, event in pairs:
            distinct[customer_id].add(event["event_id"])
        assert any(e["customer"]["customer_id"] is None for e in events)  # some name identifiers only

        summary = post_http(events, base, KEY, batch_size=batch_size, concurrency=concurrency, progress=False)

        assert summary["rejected"] == 0
        assert summary["accepted"] + summary["duplicate"] == len(events)
        assert summary["accepted"] == len({e["event_id"] for e in events}) < len(events)
        assert summary["batches"] == 20 and summary["last_position"] >= summary["accepted"]
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"}, timeout=10) as client:
            for customer_id, event_ids in distinct.items():
                answer = client.get(f"/v1/customers/{customer_id}",
                                    params={"min_position": summary["last_position"]})
                assert answer.status_code == 200, (customer_id, answer.text)
                assert answer.json()["touchpoints"] == len(event_ids), customer_id
            assert client.get("/v1/identity/conflicts").json()["conflicts"] == []
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
