"""Growing the partition count (docs/SCALE_OUT.md): `touchstream repartition` copies the
touchpoints topic and what ingest knows into a new generation; workers and the API of
that generation then show every customer exactly as before, keep read-your-writes on the
positions clients hold, and put a customer's next event on top of their history."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.api import Api, bearer, call, purchase, unique
from tests.support.kafka_runtime import kafka_runtime
from tests.support.server import REPO_ROOT

pytestmark = pytest.mark.e2e

T0 = datetime(2026, 5, 1, 9, tzinfo=UTC)


def _repartition(environment: dict[str, str], *args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "services.cli", "repartition", *args], cwd=REPO_ROOT,
                          env=environment, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    report: dict[str, Any] = json.loads(done.stdout)
    return report


@pytest.mark.timeout(420)
def test_a_new_generation_with_more_partitions_shows_every_customer_as_before(tmp_path: Path) -> None:
    uid = unique()
    customers = [{"customer_id": f"{uid}-c{n}", "emails": [f"{uid}.{n}@example.com"]} for n in range(24)]
    with kafka_runtime(tmp_path, {"TOUCHSTREAM_KAFKA_PARTITIONS": "2"}) as runtime:
        api = Api(runtime)
        last = 0
        for n, customer in enumerate(customers):  # one request at a time: acknowledged in offset order
            when = T0 + timedelta(days=n)
            events = [call(f"{uid}-call-{n}", when, customer)]
            if n % 3:
                events.append(purchase(f"{uid}-buy-{n}", when + timedelta(hours=1), customer, order_id=f"{uid}-o{n}",
                                       amount=f"{10 + n}.50"))
            last = api.ingest(events)["position"]
            if n == 12:  # the clock moves on between customers: lifecycle deadlines fall due
                tick = api.client.post("/v1/clock/ticks", json={"at": (T0 + timedelta(days=60)).isoformat()},
                                       headers=bearer(runtime.keys.admin))
                assert tick.status_code == 202, tick.text
                last = tick.json()["position"]
        before = {c["customer_id"]: api.customer(c["customer_id"], min_position=last) for c in customers}
        assert {v["lifecycle"]["stage"] for v in before.values()} >= {"new", "prospect"}, before

        # the procedure: copy while it runs, stop ingest, copy the rest, switch
        environment = runtime.stack.environment()
        first = _repartition(environment, "--partitions", "6", "--topic", f"touchpoints-g2-{uid}",
                             "--prefix", f"g2-{uid}")
        assert first["events"] >= len(customers) and first["ticks"] >= 1, first
        runtime.stop()
        rest = _repartition(environment, "--partitions", "6", "--topic", f"touchpoints-g2-{uid}",
                            "--prefix", f"g2-{uid}")
        assert rest["events"] == 0, rest  # nothing came since: the second run copies nothing twice
        runtime.stack.reconfigure({"TOUCHSTREAM_KAFKA_PARTITIONS": "6",
                                   "TOUCHSTREAM_KAFKA_TOUCHPOINTS_TOPIC": f"touchpoints-g2-{uid}",
                                   "TOUCHSTREAM_REDIS_PREFIX": f"g2-{uid}",
                                   "TOUCHSTREAM_WORKER_GROUP": f"views-g2-{uid}"})
        runtime.restart()

        # every customer exactly as before, read with the positions clients already hold
        after = {c["customer_id"]: api.customer(c["customer_id"], min_position=last) for c in customers}
        assert after == before
        owner = api.find(email=f"{uid}.5@example.com", min_position=last)
        assert owner["customer_id"] == f"{uid}-c5"  # the identity index came along

        # a webhook dispatcher of the old generation resumes at the end of the new feed
        old_prefix = environment.get("TOUCHSTREAM_REDIS_PREFIX", "touchstream")
        client = redis.Redis.from_url(runtime.stack.redis_url)
        client.set(f"{old_prefix}:delivery-cursor:webhook:email", "0-0.0-0")
        tags = {name.decode().split(":")[1] for name in client.scan_iter(match=f"g2-{uid}:*:state:*", count=1000)}
        assert len(tags) > 2 and tags <= {f"{{p{p}}}" for p in range(6)}, tags  # spread over the six partitions
        finished = _repartition(environment, "--partitions", "6", "--topic", f"touchpoints-g2-{uid}",
                                "--prefix", f"g2-{uid}", "--finish")
        cursor = finished["delivery_cursors"]["webhook:email"]
        assert client.get(f"g2-{uid}:delivery-cursor:webhook:email").decode() == cursor
        page = api.get("/v1/triggers", channel="email", since=cursor)
        assert page.status_code == 200 and page.json()["triggers"] == [], page.text
        everything = api.get("/v1/triggers", channel="email", limit=1000).json()["triggers"]
        assert len(cursor.split(".")) == 6 and (everything == [] or cursor != ".".join(["0-0"] * 6))

        # the next event of a customer lands on their new partition, on top of their history
        customer = customers[5]
        more = api.ingest([purchase(f"{uid}-buy-more", T0 + timedelta(days=61), customer, order_id=f"{uid}-o-more",
                                    amount="5.00")])
        assert more["position"] > last
        view = api.customer(customer["customer_id"], min_position=more["position"])
        assert view["touchpoints"] == before[customer["customer_id"]]["touchpoints"] + 1
        report = runtime.verify_rebuild()  # `touchstream replay` of the new generation
        assert report["exit_code"] == 0 and report["identical"] is True, report
        assert report["customers"] == len(customers), report
