"""The scale-out API with its Redis frozen: every route that needs Redis answers 503 with
Retry-After (never a 500, never a hang), and works again once Redis is back."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.api import bearer, call, error_of, unique
from tests.support.server import TEST_KEYS, RunningServer
from tools.redis_server import RedisServer
from tools.tansu import TansuBroker

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_reads_and_ingest_answer_503_while_redis_is_frozen_and_work_after(tmp_path: Path) -> None:
    with TansuBroker() as broker, RedisServer() as redis:
        settings = {"TOUCHSTREAM_RUNTIME": "kafka", "TOUCHSTREAM_KAFKA_BOOTSTRAP": broker.bootstrap,
                    "TOUCHSTREAM_REDIS_URL": redis.url, "TOUCHSTREAM_KAFKA_PARTITIONS": "2",
                    "TOUCHSTREAM_REDIS_TIMEOUT_SECONDS": "1"}
        with RunningServer(tmp_path / "api", settings) as server:
            client = server.client
            event = call(f"outage-{unique()}", datetime.now(UTC), {"emails": [f"o.{unique()}@example.com"]})
            redis.pause()
            try:
                for response in (client.get("/v1/customers/cus_x", headers=bearer(TEST_KEYS.read)),
                                 client.get("/v1/customers/cus_x/timeline", headers=bearer(TEST_KEYS.read)),
                                 client.get("/v1/identity/conflicts", headers=bearer(TEST_KEYS.read)),
                                 client.post("/v1/events", json=event, headers=bearer(TEST_KEYS.ingest))):
                    assert response.status_code == 503, response.text
                    assert response.headers.get("Retry-After"), response.headers
                    error_of(response)
                assert client.get("/readyz").status_code == 503
            finally:
                redis.resume()
            again = client.post("/v1/events", json=event, headers=bearer(TEST_KEYS.ingest))
            assert again.status_code == 202, again.text
