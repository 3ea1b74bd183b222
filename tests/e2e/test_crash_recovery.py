"""Killed mid-ingest (SIGKILL, nothing flushed), the platform loses no acknowledged event
and counts none twice; a rebuild from the log gives exactly the live views."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.support.api import Api, bearer, call, purchase, unique, wait_until

pytestmark = pytest.mark.e2e

THREADS = 4
BATCH = 50
CUSTOMERS_PER_THREAD = 5
T = datetime(2026, 2, 1, 8, 0, tzinfo=UTC)


@dataclass
class Sender:
    """One client thread: posts batches of new events until told to stop or cut off."""

    uid: str
    number: int
    base_url: str
    key: str
    sent: dict[str, str] = field(default_factory=dict)  # event id -> customer email
    events: list[dict[str, Any]] = field(default_factory=list)
    acknowledged: dict[str, int] = field(default_factory=dict)  # event id -> position
    failures: list[str] = field(default_factory=list)

    def customer(self, k: int) -> str:
        return f"crash.{self.uid}.{self.number}.{k}@example.com"

    def event(self, i: int) -> dict[str, Any]:
        email = self.customer(i % CUSTOMERS_PER_THREAD)
        event_id = f"crash-{self.uid}-{self.number}-{i}"
        when = T + timedelta(seconds=i, milliseconds=self.number)
        if i % 3 == 2:
            return purchase(event_id, when, {"emails": [email]}, order_id=f"o-{event_id}", amount="1.00")
        return call(event_id, when, {"emails": [email]}, direction="inbound", outcome="reached")

    def run(self, stop: threading.Event) -> None:
        i = 0
        with httpx.Client(base_url=self.base_url, timeout=httpx.Timeout(15.0, connect=2.0)) as client:
            while not stop.is_set():
                batch = [self.event(i + n) for n in range(BATCH)]
                i += BATCH
                for event in batch:
                    self.sent[event["event_id"]] = event["customer"]["emails"][0]
                self.events += batch
                try:
                    response = client.post("/v1/events", json=batch, headers=bearer(self.key))
                except httpx.TransportError as error:  # the server died under us: in doubt
                    self.failures.append(repr(error))
                    return
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code} {response.text[:300]}")
                    return
                for event, result in zip(batch, response.json()["results"], strict=True):
                    if result["result"] in ("accepted", "duplicate"):
                        self.acknowledged[event["event_id"]] = result["position"]
                    else:
                        self.failures.append(f"rejected: {result}")


def _stored_by_customer(api: Api, emails: list[str], position: int) -> dict[str, list[str]]:
    """Each customer's stored event ids (from the timeline), checked against the view."""
    stored: dict[str, list[str]] = {}
    for email in emails:
        response = api.get("/v1/customers", email=email, min_position=position)
        if response.status_code == 404:
            stored[email] = []
            continue
        assert response.status_code == 200, response.text
        view = response.json()
        timeline = api.timeline(view["customer_id"], min_position=position)
        ids = [e["event_id"] for e in timeline]
        assert view["touchpoints"] == len(ids), f"{email}: view counts {view['touchpoints']}, timeline {len(ids)}"
        purchases = sum(1 for e in timeline if e["type"] == "purchase")
        assert view["purchases"]["count"] == purchases, view["purchases"]
        assert view["identity"]["emails"] == [email], view["identity"]
        stored[email] = ids
    return stored


def test_a_crash_mid_ingest_loses_no_acknowledged_event_and_counts_none_twice(runtime: Any) -> None:
    api = Api(runtime)
    uid = unique()
    senders = [Sender(uid, n, runtime.base_url, runtime.keys.ingest) for n in range(THREADS)]
    stop = threading.Event()
    threads = [threading.Thread(target=s.run, args=(stop,), name=f"sender-{s.number}") for s in senders]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: time.monotonic() - started >= 1.0 and sum(len(s.acknowledged) for s in senders) >= 200,
                   timeout=30.0, what="some acknowledged traffic")
        assert all(t.is_alive() for t in threads), [s.failures for s in senders]
        runtime.kill()  # SIGKILL while the senders are still posting
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert not any(t.is_alive() for t in threads)
    for s in senders:
        assert all(not f.startswith("rejected") for f in s.failures), s.failures
    cut_off = [f for s in senders for f in s.failures if not f.startswith("ConnectError")]
    assert cut_off, f"no request was in flight when the server was killed: {[s.failures for s in senders]}"

    acknowledged = {i: p for s in senders for i, p in s.acknowledged.items()}
    sent = {i: email for s in senders for i, email in s.sent.items()}
    emails = sorted({s.customer(k) for s in senders for k in range(CUSTOMERS_PER_THREAD)})
    assert len(acknowledged) >= 200

    runtime.restart()
    position = api.settle()

    # (a) every acknowledged event is there exactly once; nothing unknown appeared
    stored = _stored_by_customer(api, emails, position)
    for email, ids in stored.items():
        assert len(ids) == len(set(ids)), f"{email}: an event counted twice"
        mine = {i for i in acknowledged if sent[i] == email}
        assert mine <= set(ids), f"{email}: acknowledged but lost: {sorted(mine - set(ids))[:10]}"
        assert all(sent.get(i) == email for i in ids), f"{email}: holds events it was never sent"
    total = sum(len(ids) for ids in stored.values())
    assert len(acknowledged) <= total <= len(sent)

    # Re-sending everything (what a sender does with unanswered requests) completes the
    # log: acknowledged events come back as duplicates at their original positions.
    for s in senders:
        for start in range(0, len(s.events), 500):
            chunk = s.events[start:start + 500]
            answer = api.ingest(chunk)
            for event, result in zip(chunk, answer["results"], strict=True):
                if event["event_id"] in acknowledged:
                    assert result["result"] == "duplicate", result
                    assert result["position"] == acknowledged[event["event_id"]], result
    position = api.settle()
    stored = _stored_by_customer(api, emails, position)
    for email, ids in stored.items():
        assert sorted(ids) == sorted(i for i, owner in sent.items() if owner == email), email
    assert sum(len(ids) for ids in stored.values()) == len(sent)

    # (b) the live views are exactly what a rebuild from the log gives
    report = runtime.verify_rebuild()
    assert report["identical"] is True and report["exit_code"] == 0, report


def test_a_restart_after_a_graceful_stop_keeps_every_view(runtime: Any) -> None:
    api = Api(runtime)
    uid = unique()
    email = f"calm.{uid}@example.com"
    answer = api.ingest([call(f"calm-{uid}-{n}", T + timedelta(minutes=n), {"emails": [email]}) for n in range(20)])
    before = api.find(email=email, min_position=answer["position"], at=T.isoformat())
    runtime.stop()
    runtime.restart()
    after = api.find(email=email, at=T.isoformat())
    assert after == before
    again = api.post_events(call(f"calm-{uid}-0", T, {"emails": [email]}))
    assert again.status_code == 200 and again.json()["results"][0]["result"] == "duplicate", again.text
