"""Synthetic traffic: deterministic, valid for the API, realistic, and never ambiguous about
who an event is about (checked with the real identity resolution)."""

from __future__ import annotations

import json
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import phonenumbers
import pytest
from typer.testing import CliRunner

from projections.codec import from_dict, instant, to_dict
from projections.identity import resolve
from services.api.contracts import TOUCHPOINT_ADAPTER
from services.cli import app
from tools.traffic import DeliveryError, TrafficOptions, generate, labelled, post_http

SMALL = TrafficOptions(customers=150, events=3000, seed=5, duplicate_rate=0.01, late_rate=0.02, link_after=300)


@pytest.fixture(scope="module")
def traffic() -> list[tuple[str, dict[str, Any]]]:
    return list(labelled(TrafficOptions(customers=400, events=8000, seed=7, duplicate_rate=0.03, late_rate=0.04,
                                        link_after=500)))


def with_received_at(event: dict[str, Any]) -> dict[str, Any]:
    return {**event, "received_at": event["occurred_at"]}


def fold_identities(pairs: Iterable[tuple[str, dict[str, Any]]]) -> tuple[dict[str, set[str]], list[Any]]:
    """What the platform would decide: generated customer -> resolved customer ids, conflicts."""
    known: dict[tuple[str, str], str] = {}
    resolved: dict[str, set[str]] = defaultdict(set)
    conflicts: list[Any] = []
    for truth, event in pairs:
        res = resolve(from_dict(with_received_at(event)), known)
        for identifier in res.links:
            known[identifier] = res.customer_id
        conflicts.extend(res.conflicts)
        resolved[truth].add(res.customer_id)
    return resolved, conflicts


def first_copies(events: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    seen: set[str] = set()
    for event in events:
        if event["event_id"] not in seen:
            seen.add(event["event_id"])
            yield event


def test_the_same_seed_generates_the_same_traffic() -> None:
    assert list(generate(SMALL)) == list(generate(SMALL))


def test_different_seeds_generate_different_traffic() -> None:
    a, b = list(generate(SMALL)), list(generate(replace(SMALL, seed=6)))
    assert len(a) == len(b)
    assert {e["customer"]["customer_id"] for e in a}.isdisjoint({e["customer"]["customer_id"] for e in b} - {None})
    assert [e["occurred_at"] for e in a[:50]] != [e["occurred_at"] for e in b[:50]]


def test_every_generated_event_passes_the_api_contract_and_is_canonical(traffic: list[tuple[str, Any]]) -> None:
    for _, event in traffic:
        model = TOUCHPOINT_ADAPTER.validate_python(event)
        assert model.model_dump(mode="json")["customer"] == event["customer"]  # nothing normalised away
        typed = from_dict(with_received_at(event))  # every field, nothing extra (money: 2 decimals here, 4 there)
        assert from_dict(to_dict(typed)) == typed and set(to_dict(typed)) == set(with_received_at(event))
        for phone in event["customer"]["phones"]:
            assert phonenumbers.is_valid_number(phonenumbers.parse(phone)) and phone.startswith("+33")
        assert all(e == e.lower() for e in event["customer"]["emails"])


def test_the_requested_events_are_emitted_inside_the_period_for_the_requested_population(
        traffic: list[tuple[str, Any]]) -> None:
    assert len(traffic) == 8000
    customers = {c for c, _ in traffic}
    assert 380 <= len(customers) <= 400
    times = [instant(e["occurred_at"]) for _, e in traffic]
    start = datetime(2025, 1, 1, tzinfo=UTC)
    assert start <= min(times) and max(times) < start + timedelta(days=365)
    assert max(times) > start + timedelta(days=330)  # the whole period is used, not just its start
    assert len({e["event_id"] for _, e in traffic}) < 8000
    assert all(e["event_id"].startswith("gen-7-") for _, e in traffic)
    short = TrafficOptions(customers=3, events=40, seed=1, start=date(2024, 6, 1), days=10)
    assert len(list(generate(short))) == 40


def test_retries_repeat_an_event_id_with_the_same_body_at_about_the_requested_rate(
        traffic: list[tuple[str, Any]]) -> None:
    bodies: dict[str, dict[str, Any]] = {}
    repeats = 0
    for _, event in traffic:
        if event["event_id"] in bodies:
            repeats += 1
            assert event == bodies[event["event_id"]]
        bodies[event["event_id"]] = event
    assert 0.02 <= repeats / len(traffic) <= 0.04
    assert len(list(first_copies(generate(replace(SMALL, duplicate_rate=0.0))))) == SMALL.events


def out_of_order(events: Iterable[dict[str, Any]]) -> tuple[int, int]:
    latest, late, total = "", 0, 0
    for event in first_copies(events):
        total += 1
        late += event["occurred_at"] < latest
        latest = max(latest, event["occurred_at"])
    return late, total


def test_late_events_are_emitted_after_events_that_happened_later(traffic: list[tuple[str, Any]]) -> None:
    late, total = out_of_order(e for _, e in traffic)
    assert 0.025 <= late / total <= 0.055
    in_order = TrafficOptions(customers=150, events=3000, seed=5, duplicate_rate=0.02, late_rate=0.0)
    assert out_of_order(generate(in_order))[0] == 0


def test_every_customer_resolves_to_itself_alone_with_the_real_identity_resolution(
        traffic: list[tuple[str, Any]]) -> None:
    resolved, conflicts = fold_identities(traffic)
    assert conflicts == []
    assert all(ids == {truth} for truth, ids in resolved.items())
    by_identifiers = [e for _, e in traffic if e["customer"]["customer_id"] is None]
    assert len(by_identifiers) > len(traffic) / 5  # the check above had real work to do


def delivered_by(pairs: list[tuple[str, Any]], batch_size: int, concurrency: int) -> list[tuple[str, Any]]:
    """The worst reordering post_http allows: each group of in-flight batches lands backwards."""
    batches = [pairs[i:i + batch_size] for i in range(0, len(pairs), batch_size)]
    groups = [batches[i:i + concurrency] for i in range(0, len(batches), concurrency)]
    return [pair for group in groups for batch in reversed(group) for pair in batch]


def test_batches_overtaking_each_other_within_the_sender_window_still_resolve_every_customer() -> None:
    options = TrafficOptions(customers=200, events=4000, seed=9, link_after=100 * 4)
    resolved, conflicts = fold_identities(delivered_by(list(labelled(options)), 100, 4))
    assert conflicts == [] and all(ids == {truth} for truth, ids in resolved.items())
    careless = TrafficOptions(customers=200, events=4000, seed=9, link_after=0)
    resolved, conflicts = fold_identities(delivered_by(list(labelled(careless)), 100, 4))
    assert conflicts or any(len(ids) > 1 for ids in resolved.values())  # why link_after exists


def test_the_traffic_looks_like_a_crm(traffic: list[tuple[str, Any]]) -> None:
    events = list(first_copies(e for _, e in traffic))
    types = Counter(e["type"] for e in events)
    assert set(types) == {"call", "email", "visit", "web_form", "purchase", "service_case", "survey", "consent"}
    assert types["purchase"] / len(events) >= 0.18 and types["purchase"] == max(types.values())
    assert {"web", "store", "phone", "email", "sms", "mobile_app", "field"} <= {e["channel"] for e in events}
    purchases = [e for e in events if e["type"] == "purchase"]
    assert Counter(p["currency"] for p in purchases).most_common(1)[0][0] == "EUR"
    assert {"EUR", "GBP"} <= {p["currency"] for p in purchases}
    assert 0.3 < sum(p["margin"] is not None for p in purchases) / len(purchases) < 0.9
    for p in purchases:
        assert p["amount"] == f"{sum(int(x['quantity']) * float(x['unit_price']) for x in p['lines']):.2f}"
    per_customer = Counter(c for c, e in traffic if e["type"] == "purchase")
    top = sum(n for _, n in per_customer.most_common(len(per_customer) // 5))
    assert top / sum(per_customer.values()) > 0.45  # a minority of customers makes most purchases
    statuses = Counter(e["status"] for e in events if e["type"] == "email")
    assert statuses["sent"] > statuses["delivered"] > statuses["opened"] > statuses["clicked"] > 0
    by_message: dict[str, set[str]] = defaultdict(set)
    for e in events:
        if e["type"] == "email":
            by_message[e["message_id"]].add(e["status"])
    assert not any({"bounced", "opened"} <= seen for seen in by_message.values())
    cases: dict[str, list[tuple[str, str]]] = defaultdict(list)
    case_owners: dict[str, set[str]] = defaultdict(set)
    for c, e in traffic:
        if e["type"] == "service_case" and (e["occurred_at"], e["status"]) not in cases[e["case_id"]]:
            cases[e["case_id"]].append((e["occurred_at"], e["status"]))
            case_owners[e["case_id"]].add(c)
    assert all(len(owners) == 1 for owners in case_owners.values())
    assert all([s for _, s in steps].count("opened") == 1 for steps in cases.values())
    assert all(sorted(steps)[0][1] == "opened" for steps in cases.values())
    assert sum(any(s == "resolved" for _, s in steps) for steps in cases.values()) > 0.8 * len(cases)
    assert any(e["category"] == "complaint" for e in events if e["type"] == "service_case")
    surveys = [e for e in events if e["type"] == "survey"]
    assert any(s["csat"] for s in surveys) and any(s["nps"] is not None for s in surveys)
    consents = Counter((e["status"], e["consent_channel"]) for e in events if e["type"] == "consent")
    assert consents["granted", "email"] > consents["withdrawn", "email"] > 0
    calls = Counter((e["direction"], e["outcome"]) for e in events if e["type"] == "call")
    assert calls["inbound", "reached"] and calls["outbound", "no_answer"]
    forms = {e["form_id"] for e in events if e["type"] == "web_form"}
    assert {"contact_request", "newsletter_signup", "account_signup"} <= forms
    assert any(e["customer"]["external_ids"] for e in events)


def test_the_cli_writes_the_traffic_to_a_jsonl_file_and_prints_a_summary(tmp_path: Path) -> None:
    path = tmp_path / "traffic.jsonl"
    result = CliRunner().invoke(app, ["generate", "--customers", "40", "--events", "500", "--seed", "3",
                                      "--start", "2025-03-01", "--days", "30", "--out", str(path)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert summary["written"] == len(lines) == 500
    assert lines == list(generate(TrafficOptions(customers=40, events=500, seed=3, start=date(2025, 3, 1), days=30)))
    refused = CliRunner().invoke(app, ["generate", "--url", "http://127.0.0.1:9"], env={})
    assert refused.exit_code != 0 and "api-key" in refused.output


class Flaky(BaseHTTPRequestHandler):
    """A platform that is busy twice (503, then 429), then answers like POST /v1/events."""

    answers = ["503", "429"]
    seen: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.headers["Authorization"] != "Bearer k" or self.path != "/v1/events":
            self.send_response(401)
            self.end_headers()
            return
        if Flaky.answers:
            self.send_response(int(Flaky.answers.pop(0)))
            self.send_header("Retry-After", "0")
            self.end_headers()
            return
        Flaky.seen.append(body)
        n = len(body["events"])
        reply = json.dumps({"position": 10 * len(Flaky.seen), "accepted": n, "duplicate": 0, "rejected": 0,
                            "results": [{"result": "accepted"}] * n}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: Any) -> None:
        pass


def test_post_http_waits_out_busy_answers_and_counts_every_batch() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        events = list(generate(TrafficOptions(customers=20, events=250, seed=4)))
        summary = post_http(events, base, "k", batch_size=100, concurrency=2, progress=False)
        assert (summary["accepted"], summary["batches"], summary["last_position"]) == (250, 3, 30)
        assert sorted(e["event_id"] for b in Flaky.seen for e in b["events"]) == sorted(e["event_id"] for e in events)
        with pytest.raises(DeliveryError, match="401"):
            post_http(events, base, "wrong", progress=False)
    finally:
        server.shutdown()
