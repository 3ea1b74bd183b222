"""``touchstream worker`` stops promptly on SIGTERM even when the broker is gone.

aiokafka's leave-group never completes without a broker, and mode (faust's service
library) waits 60 s for the consumer thread by default: longer than a Kubernetes grace
period, so the worker would be SIGKILLed mid-shutdown. The consumer thread's shutdown is
bounded to 10 s (services/scaleout/kafka/faust_transport.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.server import REPO_ROOT
from tools.bench.server import free_port
from tools.redis_server import RedisServer
from tools.tansu import TansuBroker

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_a_worker_whose_broker_died_exits_cleanly_within_twenty_seconds_of_sigterm(tmp_path: Path) -> None:
    with TansuBroker() as broker, RedisServer() as redis:
        port = free_port()
        environment = {**os.environ, "TOUCHSTREAM_RUNTIME": "kafka", "TOUCHSTREAM_KAFKA_BOOTSTRAP": broker.bootstrap,
                       "TOUCHSTREAM_REDIS_URL": redis.url, "TOUCHSTREAM_KAFKA_FETCH_MAX_WAIT_MS": "10",
                       "TOUCHSTREAM_KAFKA_SESSION_TIMEOUT_SECONDS": "6", "TOUCHSTREAM_KAFKA_HEARTBEAT_SECONDS": "0.5",
                       "TOUCHSTREAM_WORKER_WEB_PORT": str(port), "TOUCHSTREAM_DATA_DIR": str(tmp_path)}
        with (tmp_path / "worker.log").open("wb") as log:
            worker = subprocess.Popen([sys.executable, "-m", "services.cli", "worker"], cwd=REPO_ROOT,
                                      env=environment, stdout=log, stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + 60
                while True:
                    assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
                    try:
                        if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    assert time.monotonic() < deadline, "the worker never became ready"
                    time.sleep(0.1)
                broker.kill()
                time.sleep(1)
                stopped = time.monotonic()
                worker.terminate()
                code = worker.wait(timeout=60)
                took = time.monotonic() - stopped
            finally:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait()
        assert code == 0 and took < 20, (code, round(took, 1), (tmp_path / "worker.log").read_text()[-2000:])
