"""Bad input, abuse and storage trouble: every case answered precisely, the good part of
the input kept, nothing acknowledged lost, never a 500 and never a hang."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from tests.support.api import (
    Api,
    bearer,
    call,
    error_of,
    error_paths,
    iso,
    purchase,
    unique,
    wait_until,
)
from tests.support.server import FORM_ID, FORM_ORIGIN, FORM_PUBLIC_KEY, FORM_THANK_YOU_URL

pytestmark = pytest.mark.e2e

# Request validation, authentication, body and rate limits happen in the HTTP layer before
# any runtime is involved (one intake for both): a real server shows them, a second
# runtime adds nothing but minutes. Cases that reach storage run on every runtime.
HTTP_ONLY = pytest.mark.only_runtimes("embedded")

T = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)


def _call(uid: str, n: int = 0, **fields: Any) -> dict[str, Any]:
    return call(f"bad-{uid}-{n}", T + timedelta(minutes=n), {"emails": [f"bad.{uid}@example.com"]}, **fields)


def _absent(api: Api, **identifier: str) -> None:
    """Nobody has this identifier, as of a position every view includes."""
    position = api.settle()
    response = api.get("/v1/customers", min_position=position, **identifier)
    assert response.status_code == 404, f"expected no such customer: {response.status_code} {response.text[:500]}"


def _rejection_paths(response: httpx.Response) -> list[str]:
    """The field paths a 422 names, from the error object or, failing that, from the
    per-event verdicts (the shape itself is checked by its own test)."""
    assert response.status_code == 422, response.text
    body = response.json()
    if isinstance(body, dict) and isinstance(body.get("error"), dict) and body["error"].get("errors"):
        return error_paths(response)
    results = body.get("results") if isinstance(body, dict) else None
    assert results, f"a 422 that names no field: {body!r}"
    return [e["path"] for r in results for e in r.get("errors", [])]


def _single_rejection(api: Api, event: dict[str, Any]) -> list[str]:
    return _rejection_paths(api.post_events(event))


# -- malformed and invalid events -------------------------------------------------------
@HTTP_ONLY
def test_malformed_json_is_refused_with_400(api: Api) -> None:
    response = api.client.post("/v1/events", content=b'{"event_id": "x", "type": "call",',
                               headers={**bearer(api.runtime.keys.ingest), "Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert "json" in error_of(response)["message"].lower()


@HTTP_ONLY
def test_an_unknown_event_type_is_refused_naming_the_type_field(api: Api) -> None:
    uid = unique()
    event = {**_call(uid), "type": "carrier_pigeon"}
    assert _single_rejection(api, event) == ["type"]
    _absent(api, email=f"bad.{uid}@example.com")


@HTTP_ONLY
def test_an_event_without_a_type_is_refused_naming_the_type_field(api: Api) -> None:
    uid = unique()
    event = _call(uid)
    del event["type"]
    assert _single_rejection(api, event) == ["type"]


@HTTP_ONLY
def test_a_missing_field_is_refused_naming_the_field(api: Api) -> None:
    uid = unique()
    event = _call(uid)
    del event["occurred_at"]
    assert _single_rejection(api, event) == ["occurred_at"]
    _absent(api, email=f"bad.{uid}@example.com")


@HTTP_ONLY
def test_a_timestamp_without_a_time_zone_is_refused_naming_the_field(api: Api) -> None:
    event = _call(unique())
    event["occurred_at"] = "2026-04-01T12:00:00"
    assert _single_rejection(api, event) == ["occurred_at"]


@HTTP_ONLY
def test_an_unknown_channel_is_refused_naming_the_field(api: Api) -> None:
    assert _single_rejection(api, _call(unique(), channel="carrier_pigeon")) == ["channel"]


@HTTP_ONLY
def test_a_mistyped_field_in_a_batch_is_refused_with_its_index_path_and_the_rest_accepted(api: Api) -> None:
    uid = unique()
    good = _call(uid, 0)
    bad = purchase(f"bad-{uid}-1", T, {"emails": [f"bad.{uid}@example.com"]}, order_id="o-1", amount="lots")
    response = api.post_events({"events": [good, bad]})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["accepted"], answer["rejected"]) == (1, 1), answer
    accepted, rejected = answer["results"]
    assert accepted["result"] == "accepted" and accepted["event_id"] == good["event_id"], accepted
    assert rejected["result"] == "rejected" and rejected["event_id"] == bad["event_id"], rejected
    assert [e["path"] for e in rejected["errors"]] == ["events[1].amount"], rejected
    view = api.find(email=f"bad.{uid}@example.com", min_position=answer["position"])
    assert view["touchpoints"] == 1 and view["purchases"]["count"] == 0, view


@HTTP_ONLY
def test_a_batch_where_every_event_is_bad_is_refused_naming_each_index_path(api: Api) -> None:
    uid = unique()
    first = {**_call(uid, 0), "duration_seconds": "long"}
    second = {**_call(uid, 1), "occurred_at": "yesterday"}
    response = api.post_events([first, second])
    assert sorted(_rejection_paths(response)) == ["events[0].duration_seconds", "events[1].occurred_at"]
    _absent(api, email=f"bad.{uid}@example.com")


@HTTP_ONLY
def test_a_rejected_event_is_answered_in_the_documented_error_shape(api: Api) -> None:
    """``{"error": {"status", "message", "errors": [{"path", "message"}]}}``, like every
    other error, for one event and for a batch where every event is bad."""
    uid = unique()
    single = api.post_events({**_call(uid, 0), "occurred_at": "2026-04-01T12:00:00"})
    assert single.status_code == 422, single.text
    assert error_paths(single) == ["occurred_at"]
    batch = api.post_events([{**_call(uid, 1), "channel": "fax"}, {**_call(uid, 2), "outcome": "maybe"}])
    assert batch.status_code == 422, batch.text
    assert sorted(error_paths(batch)) == ["events[0].channel", "events[1].outcome"]


def test_a_batch_with_some_bad_events_keeps_the_good_ones_and_reports_each_bad_one(api: Api) -> None:
    uid = unique()
    email = f"mixed.{uid}@example.com"
    ref = {"emails": [email]}
    events: list[Any] = [
        call(f"mixed-{uid}-0", T, ref),
        {**call(f"mixed-{uid}-1", T, ref), "channel": "telepathy"},
        call(f"mixed-{uid}-2", T + timedelta(hours=1), ref, direction="inbound"),
        {**call(f"mixed-{uid}-3", T, ref), "surprise": "field"},
        "not an event",
        purchase(f"mixed-{uid}-5", T + timedelta(hours=2), ref, order_id="o-5", amount="12.50"),
        {**purchase(f"mixed-{uid}-6", T, ref, order_id="o-6", amount="1"), "currency": "euro"},
        call(f"mixed-{uid}-7", T + timedelta(hours=3), {"emails": ["not-an-email"]}),
    ]
    response = api.post_events({"events": events})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["accepted"], answer["duplicate"], answer["rejected"]) == (3, 0, 5), answer
    results = answer["results"]
    assert len(results) == len(events)
    assert [r["result"] for r in results] == ["accepted", "rejected", "accepted", "rejected", "rejected",
                                              "accepted", "rejected", "rejected"], results
    expected_paths = {1: ["events[1].channel"], 3: ["events[3].surprise"], 4: ["events[4]"],
                      6: ["events[6].currency"], 7: ["events[7].customer.emails[0]"]}
    for index, paths in expected_paths.items():
        assert [e["path"] for e in results[index]["errors"]] == paths, results[index]
        assert all(e["message"] for e in results[index]["errors"]), results[index]
    good_ids = [f"mixed-{uid}-{i}" for i in (0, 2, 5)]
    assert [r["event_id"] for r in results if r["result"] == "accepted"] == good_ids
    assert answer["position"] == max(r["position"] for r in results if r["result"] == "accepted")

    view = api.find(email=email, min_position=answer["position"])
    assert view["touchpoints"] == 3 and view["purchases"]["count"] == 1, view
    assert sorted(e["event_id"] for e in api.timeline(view["customer_id"])) == sorted(good_ids)


# -- size limits and content type -------------------------------------------------------
def _padded(uid: str, n: int, pad: int) -> dict[str, Any]:
    return _call(uid, n, attributes={f"note{i}": "x" * 900 for i in range(pad // 900)})


@HTTP_ONLY
def test_a_body_over_1_mib_is_refused_with_413(api: Api) -> None:
    uid = unique()
    events = [_padded(uid, n, 27_000) for n in range(45)]  # each < 32 KB, together > 1 MiB
    response = api.post_events(events)
    assert response.status_code == 413, response.text
    error_of(response)
    _absent(api, email=f"bad.{uid}@example.com")


@HTTP_ONLY
def test_a_body_over_1_mib_without_a_declared_length_is_refused_with_413(api: Api) -> None:
    chunk = b"[" + b'{"padding": "' + b"x" * 65_000 + b'"},'

    def body() -> Iterator[bytes]:  # chunked transfer: no Content-Length to trust
        for _ in range(20):
            yield chunk
        yield b"{}]"

    response = api.client.post("/v1/events", content=body(),
                               headers={**bearer(api.runtime.keys.ingest), "Content-Type": "application/json"})
    assert response.status_code == 413, response.text
    error_of(response)


@HTTP_ONLY
def test_one_event_over_32_kb_in_a_batch_is_rejected_as_too_large_and_the_others_accepted(api: Api) -> None:
    uid = unique()
    events = [_call(uid, 0), _padded(uid, 1, 34_000), _call(uid, 2)]
    response = api.post_events(events)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert [r["result"] for r in answer["results"]] == ["accepted", "rejected", "accepted"], answer
    big = answer["results"][1]
    assert big["reason"] == "too_large" and big["event_id"] == events[1]["event_id"], big
    assert [e["path"] for e in big["errors"]] == ["events[1]"], big
    view = api.find(email=f"bad.{uid}@example.com", min_position=answer["position"])
    assert sorted(e["event_id"] for e in api.timeline(view["customer_id"])) == [
        events[0]["event_id"], events[2]["event_id"]]


@HTTP_ONLY
def test_a_batch_of_more_than_1000_events_is_refused_naming_the_batch_and_nothing_stored(api: Api) -> None:
    uid = unique()
    response = api.post_events([_call(uid, n) for n in range(1001)])
    assert response.status_code == 422, response.text  # the contract's maxItems
    assert error_paths(response) == ["events"]
    _absent(api, email=f"bad.{uid}@example.com")


@HTTP_ONLY
def test_a_batch_of_exactly_1000_events_is_accepted(api: Api) -> None:
    uid = unique()
    answer = api.ingest([_call(uid, n) for n in range(1000)])
    assert answer["accepted"] == 1000, {k: v for k, v in answer.items() if k != "results"}
    view = api.find(email=f"bad.{uid}@example.com", min_position=answer["position"])
    assert view["touchpoints"] == 1000


@HTTP_ONLY
def test_a_body_that_is_not_json_by_content_type_is_refused_with_415(api: Api) -> None:
    uid = unique()
    for media in ("text/plain", "application/x-www-form-urlencoded"):
        response = api.client.post("/v1/events", json=_call(uid),
                                   headers={**bearer(api.runtime.keys.ingest), "Content-Type": media})
        assert response.status_code == 415, response.text
        error_of(response)
    _absent(api, email=f"bad.{uid}@example.com")


# -- keys and scopes --------------------------------------------------------------------
@HTTP_ONLY
def test_a_request_without_a_key_or_with_an_unknown_key_is_refused_with_401(api: Api) -> None:
    uid = unique()
    for headers in ({}, bearer("not-a-key-of-ours"), {"X-API-Key": "not-a-key-of-ours"}):
        response = api.client.post("/v1/events", json=_call(uid), headers=headers)
        assert response.status_code == 401, response.text
        error_of(response)
        response = api.client.get("/v1/customers", params={"email": f"bad.{uid}@example.com"}, headers=headers)
        assert response.status_code == 401, response.text
        error_of(response)
    _absent(api, email=f"bad.{uid}@example.com")


@HTTP_ONLY
def test_a_read_only_key_may_not_post_events(api: Api) -> None:
    uid = unique()
    response = api.post_events(_call(uid), key=api.runtime.keys.read)
    assert response.status_code == 403, response.text
    error_of(response)
    _absent(api, email=f"bad.{uid}@example.com")


@HTTP_ONLY
def test_an_ingest_only_key_may_not_read_customers(api: Api) -> None:
    uid = unique()
    position = api.ingest(_call(uid))["position"]
    ingest_key = api.runtime.keys.ingest
    for path, params in (("/v1/customers", {"email": f"bad.{uid}@example.com"}), ("/v1/identity/conflicts", {}),
                         ("/v1/dead-letters", {})):
        response = api.get(path, key=ingest_key, **params)
        assert response.status_code == 403, f"{path}: {response.text}"
        error_of(response)
    # the key that may read does read it; the API key in X-API-Key works as well
    assert api.find(email=f"bad.{uid}@example.com", min_position=position)["touchpoints"] == 1
    response = api.client.get("/v1/customers", params={"email": f"bad.{uid}@example.com"},
                              headers={"X-API-Key": api.runtime.keys.admin})
    assert response.status_code == 200, response.text


# -- rate limit -------------------------------------------------------------------------
@HTTP_ONLY
def test_a_key_over_its_rate_is_answered_429_with_retry_after(start_runtime: Any) -> None:
    api = Api(start_runtime({"TOUCHSTREAM_RATE_LIMIT_PER_SECOND": "1", "TOUCHSTREAM_RATE_LIMIT_BURST": "2"}))
    uid = unique()
    answers = [api.post_events(_call(uid, n)) for n in range(3)]
    assert [a.status_code for a in answers[:2]] == [202, 202], [a.text for a in answers]
    limited = answers[2]
    assert limited.status_code == 429, limited.text
    error_of(limited)
    retry_after = limited.headers.get("Retry-After")
    assert retry_after is not None and retry_after.isdigit() and 1 <= int(retry_after) <= 5, limited.headers

    # Another key has its own allowance.
    other = api.post_events(_call(uid, 10), key=api.runtime.keys.admin)
    assert other.status_code == 202, other.text

    # Honouring Retry-After, the refused event goes through, stored for the first time.
    time.sleep(int(retry_after))
    again = api.post_events(_call(uid, 2))
    assert again.status_code == 202, again.text
    assert again.json()["results"][0]["result"] == "accepted", again.json()


# -- storage trouble --------------------------------------------------------------------
# The quota is the embedded log's own setting; a Kafka broker manages its own disk, and a
# broker refusing writes is the storage_unavailable scenario below, run on every runtime.
@pytest.mark.only_runtimes("embedded")
def test_a_full_log_answers_503_with_retry_after_never_500_and_keeps_everything_acknowledged(
    start_runtime: Any,
) -> None:
    api = Api(start_runtime({"TOUCHSTREAM_LOG_MAX_BYTES": "300000"}))
    uid = unique()
    customers = [f"full.{uid}.{k}@example.com" for k in range(5)]
    acknowledged: dict[str, str] = {}  # event id -> customer email
    sent: set[str] = set()
    last_position = 0
    refused: httpx.Response | None = None
    for batch in range(400):
        events = []
        for n in range(50):
            i = batch * 50 + n
            email = customers[i % len(customers)]
            events.append(call(f"full-{uid}-{i}", T + timedelta(seconds=i), {"emails": [email]},
                               attributes={"note": "n" * 500}))
        sent.update(e["event_id"] for e in events)
        response = api.post_events(events)
        assert response.status_code in (200, 503), f"batch {batch}: {response.status_code} {response.text[:500]}"
        if response.status_code == 503:
            refused = response
            break
        for event, result in zip(events, response.json()["results"], strict=True):
            assert result["result"] == "accepted", result
            acknowledged[event["event_id"]] = event["customer"]["emails"][0]
            last_position = max(last_position, result["position"])
    assert refused is not None, "the log never filled up"
    assert acknowledged, "nothing fitted before the log was full"
    error_of(refused)
    retry_after = refused.headers.get("Retry-After")
    assert retry_after is not None and retry_after.isdigit(), refused.headers

    # Still full: a single event is refused the same way (or stored if it fits), never a 500.
    single = api.post_events(call(f"full-{uid}-single", T, {"emails": [customers[0]]}))
    assert single.status_code in (202, 503), single.text
    if single.status_code == 202:  # it fitted: reads below must include it too
        last_position = max(last_position, single.json()["position"])

    # Reads still work, and every acknowledged event is there exactly once.
    total = 0
    for email in customers:
        view = api.find(email=email, min_position=last_position)
        ids = [e["event_id"] for e in api.timeline(view["customer_id"])]
        assert len(ids) == len(set(ids)), "an event is in a timeline twice"
        assert view["touchpoints"] == len(ids), view
        mine = {i for i, owner in acknowledged.items() if owner == email}
        assert mine <= set(ids), f"acknowledged events lost: {sorted(mine - set(ids))[:10]}"
        assert set(ids) <= sent | {f"full-{uid}-single"}
        total += len(ids)
    assert total >= len(acknowledged)


def test_a_locked_log_answers_503_quickly_and_accepts_again_once_released(start_runtime: Any) -> None:
    runtime = start_runtime({"TOUCHSTREAM_SQLITE_LOCK_TIMEOUT_SECONDS": "1"})
    api = Api(runtime)
    uid = unique()
    api.ingest(_call(uid, 0))
    event = _call(uid, 1)
    with runtime.storage_unavailable():
        started = time.monotonic()
        try:
            response = api.post_events(event)
        except httpx.TimeoutException:
            pytest.fail("the server hung while the log was locked")
        elapsed = time.monotonic() - started
        assert response.status_code == 503, response.text
        assert elapsed < 5.0, f"answered after {elapsed:.1f} s"
        error_of(response)
        retry_after = response.headers.get("Retry-After")
        assert retry_after is not None and retry_after.isdigit(), response.headers
        health = api.client.get("/healthz")
        assert health.status_code == 200, health.text
    response = api.post_events(event)
    assert response.status_code == 202, response.text
    assert response.json()["results"][0]["result"] == "accepted", response.json()
    view = api.find(email=f"bad.{uid}@example.com", min_position=response.json()["position"])
    assert view["touchpoints"] == 2


# -- the browser form endpoint ----------------------------------------------------------
@HTTP_ONLY
def test_a_form_posted_from_another_origin_is_refused_with_403(api: Api) -> None:
    email = f"form.{unique()}@example.com"
    response = api.post_form({"email": email}, origin="https://evil.example")
    assert response.status_code == 403, response.text
    error_of(response)
    assert "access-control-allow-origin" not in response.headers
    _absent(api, email=email)


@HTTP_ONLY
def test_a_form_posted_with_a_wrong_key_is_refused_with_401(api: Api) -> None:
    email = f"form.{unique()}@example.com"
    for key in ("pk_wrong_key_999", None):
        response = api.post_form({"email": email}, key=key)
        assert response.status_code == 401, response.text
        error_of(response)
    _absent(api, email=email)


@HTTP_ONLY
def test_a_form_preflight_from_an_allowed_origin_is_answered_204_with_cors_headers(api: Api) -> None:
    response = api.client.options("/v1/forms/contact", headers={
        "Origin": FORM_ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert response.status_code == 204, response.text
    assert response.headers.get("access-control-allow-origin") == FORM_ORIGIN
    assert "POST" in response.headers.get("access-control-allow-methods", "")
    refused = api.client.options("/v1/forms/contact", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert refused.status_code == 403, refused.text
    assert "access-control-allow-origin" not in refused.headers


def test_a_form_post_asking_for_json_gets_a_json_answer_and_is_stored(api: Api) -> None:
    email = f"form.{unique()}@example.com"
    response = api.post_form({"email": email, "first_name": "Zoé", "topic": "quote"}, json_answer=True)
    assert response.status_code == 202, response.text
    assert response.headers.get("access-control-allow-origin") == FORM_ORIGIN
    verdict = response.json()
    assert verdict["result"] == "accepted" and verdict["type"] == "web_form", verdict
    view = api.find(email=email, min_position=verdict["position"])
    assert view["touchpoints"] == 1 and view["profile"] == {"first_name": "Zoé"}, view
    [event] = api.timeline(view["customer_id"])
    assert event["event_id"] == verdict["event_id"] and event["fields"] == {"first_name": "Zoé", "topic": "quote"}


@HTTP_ONLY
def test_a_form_post_from_a_plain_browser_form_is_redirected_to_the_thank_you_page(api: Api) -> None:
    email = f"form.{unique()}@example.com"
    response = api.post_form({"email": email}, json_answer=False)
    assert response.status_code == 303, response.text
    assert response.headers.get("location") == FORM_THANK_YOU_URL
    position = api.settle()
    assert api.find(email=email, min_position=position)["touchpoints"] == 1


@HTTP_ONLY
def test_a_form_post_with_the_honeypot_filled_looks_successful_but_stores_nothing(api: Api) -> None:
    email = f"spam.{unique()}@example.com"
    as_json = api.post_form({"email": email, "_hp": "http://spam.example"}, json_answer=True)
    assert as_json.status_code == 202, as_json.text
    assert as_json.json().get("result") == "accepted", as_json.json()
    as_form = api.post_form({"email": email, "_hp": "buy now"}, json_answer=False)
    assert as_form.status_code == 303, as_form.text
    assert as_form.headers.get("location") == FORM_THANK_YOU_URL
    _absent(api, email=email)


def test_a_multipart_form_post_is_accepted(api: Api) -> None:
    email = f"multi.{unique()}@example.com"
    response = api.post_form({"email": email, "city": "Nantes", "message": "hello"}, multipart=True)
    assert response.status_code == 202, response.text
    verdict = response.json()
    assert verdict["result"] == "accepted", verdict
    view = api.find(email=email, min_position=verdict["position"])
    assert view["profile"] == {"city": "Nantes"}, view
    [event] = api.timeline(view["customer_id"])
    assert event["fields"] == {"city": "Nantes", "message": "hello"}, event


def test_a_form_resubmitted_with_the_same_event_id_is_stored_once(api: Api) -> None:
    email = f"twice.{unique()}@example.com"
    fields = {"email": email, "_event_id": f"form-{unique()}"}
    first = api.post_form(fields)
    second = api.post_form(fields)
    assert first.status_code == 202 and first.json()["result"] == "accepted", first.text
    assert second.json()["result"] == "duplicate", second.text
    assert second.json()["position"] == first.json()["position"]
    view = api.find(email=email, min_position=first.json()["position"])
    assert view["touchpoints"] == 1


@HTTP_ONLY
def test_an_unknown_form_is_not_found(api: Api) -> None:
    response = api.post_form({"email": f"x.{unique()}@example.com"}, form_id="no-such-form")
    assert response.status_code == 404, response.text
    error_of(response)


@HTTP_ONLY
def test_the_rate_limit_holds_until_the_wait_is_over(start_runtime: Any) -> None:
    """Retry-After is honest: retrying earlier is still refused, retrying after it works."""
    api = Api(start_runtime({"TOUCHSTREAM_RATE_LIMIT_PER_SECOND": "0.5", "TOUCHSTREAM_RATE_LIMIT_BURST": "1"}))
    uid = unique()
    assert api.post_events(_call(uid, 0)).status_code == 202
    refused = api.post_events(_call(uid, 1))
    assert refused.status_code == 429, refused.text
    wait = int(refused.headers["Retry-After"])
    assert wait >= 1
    assert api.post_events(_call(uid, 1)).status_code == 429
    accepted = wait_until(lambda: (r := api.post_events(_call(uid, 1))).status_code == 202 and r,
                          timeout=wait + 2.0, interval=0.25, what="the rate limit to let a request through")
    assert accepted.json()["results"][0]["result"] == "accepted"


@HTTP_ONLY
def test_a_public_form_cannot_claim_the_event_id_of_another_system(api: Api) -> None:
    uid = unique()
    claimed, email = f"order-{uid}", f"claim.{uid}@example.com"
    form = api.post_form({"email": email, "_event_id": claimed})
    assert form.status_code == 202, form.text
    assert form.json()["event_id"] == f"form:contact:{claimed}"
    real = api.post_events(call(claimed, T, {"emails": [email]}))
    assert real.status_code == 202, real.text
    assert real.json()["results"][0]["result"] == "accepted"


@HTTP_ONLY
def test_an_event_dated_beyond_the_future_tolerance_is_refused_on_its_field(start_runtime: Any) -> None:
    api = Api(start_runtime({"TOUCHSTREAM_MAX_FUTURE_SECONDS": "900"}))
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    response = api.post_events(call(f"future-{unique()}", tomorrow, {"emails": [f"f.{unique()}@example.com"]}))
    assert response.status_code == 409, response.text  # well-formed: a conflict with the platform's clock
    assert error_paths(response) == ["occurred_at"]
    assert response.json()["results"][0]["reason"] == "in_the_future"
    mixed = api.post_events([call(f"future-{unique()}", tomorrow, {"customer_id": "c-1"}),
                             {"type": "call", "event_id": f"bad-{unique()}"}])
    assert mixed.status_code == 422, mixed.text  # one of them breaks the contract: invalid


# -- strict input rules over HTTP (the rules themselves: tests/unit/test_input_rules.py) --
@HTTP_ONLY
def test_a_body_naming_a_key_twice_is_refused_and_nothing_is_stored(api: Api) -> None:
    uid = unique()
    body = (b'{"event_id": "dup-%s", "type": "purchase", "occurred_at": "2026-04-01T12:00:00Z", "source": "shop",'
            b' "customer": {"emails": ["dup.%s@example.com"]}, "channel": "web", "order_id": "o-1",'
            b' "amount": "10.00", "amount": "-999", "currency": "EUR"}') % (uid.encode(), uid.encode())
    response = api.client.post("/v1/events", content=body,
                               headers={**bearer(api.runtime.keys.ingest), "Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert "duplicate key 'amount'" in error_of(response)["message"]
    _absent(api, email=f"dup.{uid}@example.com")


@HTTP_ONLY
def test_every_query_parameter_out_of_range_is_refused_naming_it(api: Api) -> None:
    """What storage or the calendar cannot hold is a 422 on the parameter, never a 500."""
    cases = [
        ("/v1/dead-letters", {"after": "10000000000000000000"}, "after"),
        ("/v1/identity/conflicts", {"after": "9223372036854775808"}, "after"),
        ("/v1/identity/conflicts", {"after": "-1"}, "after"),
        ("/v1/analytics/segments", {"to": "0001-01-04T00:00:00Z"}, "to"),
        ("/v1/analytics/lifecycle", {"to": "0001-01-04T00:00:00Z"}, "to"),
        ("/v1/analytics/lifecycle", {"to": "0.5"}, "to"),
        ("/v1/analytics/lifecycle", {"from": "2026-04-01"}, "from"),
        ("/v1/customers/c-1", {"min_position": "99999999999999999999"}, "min_position"),
        ("/v1/customers/c-1", {"at": "2026-04-01T12:00:00"}, "at"),
        ("/v1/customers/a b", {}, "customer_id"),
        ("/v1/lifecycle/transitions", {"customer_id": "a/b"}, "customer_id"),
        ("/v1/triggers", {"since": "x" * 600}, "since"),
        ("/v1/segments/changes", {"after": "a\u0000b"}, "after"),
    ]
    for path, params, name in cases:
        response = api.get(path, **params)
        assert response.status_code == 422, f"{path} {params}: {response.status_code} {response.text[:500]}"
        assert error_paths(response) == [name], f"{path} {params}: {response.text[:500]}"


def test_a_request_the_platform_s_state_cannot_answer_is_a_conflict_naming_the_parameter(api: Api) -> None:
    """A position no write was given and a tick ahead of the clock are well-formed (the
    contract cannot know the log's head or the time): 409 on the parameter, at once, never
    a 503 after waiting for what will never come."""
    head = api.settle()
    started = time.monotonic()
    response = api.get("/v1/customers/c-1", min_position=head + 1_000_000)
    assert response.status_code == 409 and error_paths(response) == ["min_position"], response.text
    assert time.monotonic() - started < 1.0
    ahead = datetime.now(UTC) + timedelta(days=2)
    tick = api.client.post("/v1/clock/ticks", json={"at": iso(ahead)}, headers=bearer(api.runtime.keys.admin))
    assert tick.status_code == 409 and error_paths(tick) == ["at"], tick.text


@HTTP_ONLY
def test_a_clock_tick_at_a_number_is_refused_naming_at(api: Api) -> None:
    for at in (0, "20261201", "2026-04-01T12:00:00"):
        response = api.client.post("/v1/clock/ticks", json={"at": at}, headers=bearer(api.runtime.keys.admin))
        assert response.status_code == 422, response.text
        assert error_paths(response) == ["at"]


@HTTP_ONLY
def test_routing_errors_come_in_the_one_error_shape(api: Api) -> None:
    """An unknown path (404) and a method a path does not take (405) too, not only the
    errors the routes raise themselves."""
    missing = api.get("/v1/nothing/here")
    assert missing.status_code == 404 and "detail" not in missing.json(), missing.text
    error_of(missing)
    wrong = api.client.delete("/v1/events", headers=bearer(api.runtime.keys.admin))
    assert wrong.status_code == 405, wrong.text
    error_of(wrong)
    assert wrong.headers["allow"] == "POST"


@HTTP_ONLY
def test_a_rejected_form_answers_in_the_one_error_shape_with_its_field_path(api: Api) -> None:
    response = api.post_form({"email": f"form.{unique()}@example.com", "_event_id": "a/b"})
    assert response.status_code == 422, response.text
    assert error_paths(response) == ["event_id"]


@HTTP_ONLY
def test_a_clock_tick_body_is_read_as_strictly_as_an_event(api: Api) -> None:
    admin = {**bearer(api.runtime.keys.admin), "Content-Type": "application/json"}
    twice = api.client.post("/v1/clock/ticks", content=b'{"at": "2026-04-01T12:00:00Z", "at": "1970-01-01T00:00:00Z"}',
                            headers=admin)
    assert twice.status_code == 400, twice.text
    assert "duplicate key 'at'" in error_of(twice)["message"]
    unknown = api.client.post("/v1/clock/ticks", json={"when": "2026-04-01T12:00:00Z"}, headers=admin)
    assert unknown.status_code == 422 and error_paths(unknown) == ["when"], unknown.text
    now = api.client.post("/v1/clock/ticks", headers=bearer(api.runtime.keys.admin))
    assert now.status_code == 202, now.text


@HTTP_ONLY
def test_a_form_field_sent_twice_is_refused_naming_it(api: Api) -> None:
    body = f"email=twice.{unique()}%40example.com&city=Nantes&city=Lyon&_key={FORM_PUBLIC_KEY}"
    response = api.client.post(f"/v1/forms/{FORM_ID}", content=body.encode(), headers={
        "Origin": FORM_ORIGIN, "Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 422, response.text
    assert error_paths(response) == ["fields.city"]


@HTTP_ONLY
def test_a_lookup_by_a_bad_identifier_names_the_parameter(api: Api) -> None:
    for params, name in (({"email": "not-an-email"}, "email"), ({"email": ""}, "email"),
                         ({"external_id": "no-system"}, "external_id"), ({"phone": "12"}, "phone")):
        response = api.get("/v1/customers", **params)
        assert response.status_code == 422, f"{params}: {response.text}"
        assert error_paths(response) == [name], f"{params}: {response.text}"


@HTTP_ONLY
def test_ingest_answers_and_errors_match_the_schemas_the_openapi_document_states(api: Api) -> None:
    components = api.client.get("/openapi.json").json()["components"]

    def check(body: Any, name: str) -> None:
        Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": components}).validate(body)

    uid = unique()
    mixed = api.post_events([_call(uid, 0), {**_call(uid, 1), "occurred_at": 0}])
    assert mixed.status_code == 200, mixed.text
    check(mixed.json(), "Verdicts")
    refused = api.post_events({**_call(uid, 2), "source": "a\u0000b"})
    assert refused.status_code == 422, refused.text
    check(refused.json(), "Verdicts")
    check(refused.json(), "Error")
    check(api.get("/v1/dead-letters", after=-1).json(), "Error")


@HTTP_ONLY
def test_every_json_answer_matches_the_schema_the_openapi_document_states(api: Api) -> None:
    document = api.client.get("/openapi.json").json()
    uid = unique()
    customer = f"answers-{uid}"
    position = api.ingest(purchase(f"answers-{uid}", T, {"customer_id": customer}, order_id="o-1",
                                   amount="10.00"))["position"]
    tick = api.client.post("/v1/clock/ticks", headers=bearer(api.runtime.keys.admin))
    calls = [("post", "/v1/clock/ticks", tick)]
    for path, methods in document["paths"].items():
        schema = methods.get("get", {}).get("responses", {}).get("200", {}).get("content", {}).get("application/json")
        if schema is None:
            continue
        concrete = path.replace("{customer_id}", customer)
        if "{" in concrete:
            continue
        calls.append(("get", path, api.get(concrete, min_position=position if "customers" in path else None)))
    assert len(calls) >= 15, [p for _, p, _ in calls]
    for method, path, response in calls:
        status = str(response.status_code)  # a fresh server has no purchase model: 404, documented too
        documented = document["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
        Draft202012Validator({**documented, "components": document["components"]}).validate(response.json())


@HTTP_ONLY
def test_a_batch_wrapper_holding_anything_beside_events_is_refused_naming_it(api: Api) -> None:
    uid = unique()
    response = api.post_events({"events": [_call(uid, 0)], "evnets": []})
    assert response.status_code == 422, response.text
    assert error_paths(response) == ["evnets"]
    _absent(api, email=f"bad.{uid}@example.com")
