"""Operations: health and readiness, Prometheus metrics that count what happened without
ever naming a customer, logs without personal data, and a complete OpenAPI document."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.api import Api, bearer, call, consent, purchase, unique
from tests.support.server import FORM_ORIGIN

pytestmark = pytest.mark.e2e

T = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)

V1_ROUTES = {
    ("post", "/v1/events"),
    ("post", "/v1/forms/{form_id}"),
    ("get", "/v1/customers"),
    ("get", "/v1/customers/{customer_id}"),
    ("get", "/v1/customers/{customer_id}/timeline"),
    ("get", "/v1/customers/{customer_id}/export"),
    ("get", "/v1/identity/conflicts"),
    ("get", "/v1/dead-letters"),
    ("post", "/v1/clock/ticks"),
    ("get", "/v1/lifecycle/transitions"),
    ("get", "/v1/analytics/lifecycle"),
    ("post", "/v1/value/refit"),
    ("get", "/v1/value/model"),
    ("get", "/v1/value/cards"),
    ("get", "/v1/value/validation"),
    ("get", "/v1/analytics/rfm"),
    ("get", "/v1/analytics/value"),
    ("get", "/v1/analytics/segments"),
    ("get", "/v1/segments/changes"),
    ("get", "/v1/segments/{segment_id}/members"),
    ("get", "/v1/triggers"),  # tests/e2e/test_next_best_contact.py, test_trigger_delivery.py
    ("get", "/v1/triggers/stream"),
    ("get", "/v1/triggers/dead-letters"),
    ("get", "/v1/analytics/triggers"),
}
MERGE_ROUTES = {  # tests/e2e/test_merges.py; the embedded runtime's only, for now (docs/IDENTITY.md)
    ("post", "/v1/customers/{customer_id}/merge"),
    ("post", "/v1/merges/{merge_id}/undo"),
    ("get", "/v1/merges/{merge_id}"),
    ("get", "/v1/merges"),
    ("post", "/v1/identity/conflicts/{position}/resolve"),
}
OPS_ROUTES = {"/metrics", "/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def _samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    found = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found.append((dict(sample.labels), sample.value))
    return found


def _total(samples: list[tuple[dict[str, str], float]], **labels: str) -> float:
    return sum(v for lab, v in samples if all(lab.get(k) == want for k, want in labels.items()))


def test_health_and_readiness_answer(api: Api) -> None:
    health = api.client.get("/healthz")
    assert health.status_code == 200, health.text
    assert health.json()["status"] == "ok"
    ready = api.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["ready"] is True, ready.json()


def test_metrics_count_events_by_result_lag_and_requests_by_route_template(api: Api) -> None:
    uid = unique()
    email = f"metrics.{uid}@example.com"
    ref = {"emails": [email]}
    first = call(f"m-{uid}-1", T, ref)
    api.ingest([first, purchase(f"m-{uid}-2", T, ref, order_id="o-1", amount="5.00")])
    assert api.post_events(first).json()["duplicate"] == 1
    assert api.post_events({**call(f"m-{uid}-3", T, ref), "channel": "smoke"}).status_code == 422
    last = api.ingest(call(f"m-{uid}-4", T + timedelta(hours=1), ref))["position"]
    spam = api.post_form({"email": f"spam.{uid}@example.com", "_hp": "x"})
    assert spam.status_code == 202, spam.text
    view = api.find(email=email, min_position=last)
    api.customer(view["customer_id"])
    api.timeline(view["customer_id"])
    assert api.client.get(f"/v1/nothing/here/{view['customer_id']}").status_code == 404

    text = api.client.get("/metrics").text
    events = _samples(text, "touchstream_events_total")
    assert _total(events, result="accepted") == 3, events
    assert _total(events, result="accepted", type="call") == 2, events
    assert _total(events, result="duplicate") == 1, events
    assert _total(events, result="rejected", type="call") == 1, events
    assert _total(events, result="rejected", reason="spam") == 1, events

    lag = _samples(text, "touchstream_projection_lag_events")
    assert lag and lag[0][1] == 0, lag

    requests = _samples(text, "touchstream_http_requests_total")
    assert _total(requests, route="/v1/events", method="POST") == 4, requests
    assert _total(requests, route="/v1/customers/{customer_id}", method="GET", status="200") == 1, requests
    assert _total(requests, route="/v1/customers/{customer_id}/timeline", method="GET") == 1, requests
    assert _total(requests, route="/v1/customers", method="GET", status="200") == 1, requests
    templates = {path for _, path in V1_ROUTES} | OPS_ROUTES | {"unmatched"}
    for labels, _ in requests:
        assert labels["route"] in templates, f"a raw path in a route label: {labels}"
    for secret in (view["customer_id"], email, uid):
        assert secret not in text, f"{secret!r} appears in /metrics"


def test_neither_metrics_nor_logs_carry_emails_or_phone_numbers(start_runtime: Any) -> None:
    runtime = start_runtime({"TOUCHSTREAM_LOG_LEVEL": "debug"})
    api = Api(runtime)
    uid = unique()
    digits = f"{int(uid, 16) % 100_000_000:08d}"
    emails = [f"Secret.Person.{uid}@Example.com", f"other.{uid}@example.org", f"form.{uid}@example.net"]
    phones_typed = [f"06 {digits[:2]} {digits[2:4]} {digits[4:6]} {digits[6:]}", f"+33 7 {digits[:2]} 00 00 01"]
    phones_e164 = ["+336" + digits, f"+337{digits[:2]}000001"]
    a = {"emails": [emails[0]], "phones": [phones_typed[0]]}
    b = {"emails": [emails[1]], "phones": [phones_typed[1]]}
    api.ingest([call(f"pii-{uid}-1", T, a), call(f"pii-{uid}-2", T, b), consent(
        f"pii-{uid}-3", T, a, consent_channel="sms", purpose="marketing", status="granted")])
    api.post_events(call(f"pii-{uid}-1", T, a))  # duplicate
    api.post_events({**call(f"pii-{uid}-4", T, a), "channel": "smoke"})  # rejected
    api.post_events(call(f"pii-{uid}-5", T, {"emails": [emails[0]], "phones": ["12"]}))  # rejected phone
    clash = api.ingest(call(f"pii-{uid}-6", T, {"emails": [emails[0]], "phones": [phones_typed[1]]}))
    api.post_form({"email": emails[2], "phone": phones_typed[0], "first_name": "Secret"})
    api.post_form({"email": emails[2]}, origin="https://evil.example")
    api.post_form({"email": emails[2], "_hp": "x"})
    for params in ({"email": emails[0]}, {"phone": phones_typed[1]}, {"email": f"nobody.{uid}@example.com"},
                   {"phone": "not a phone"}):
        api.get("/v1/customers", min_position=clash["position"], **params)
    api.client.get("/v1/customers", params={"email": emails[1]}, headers=bearer("wrong-key"))
    api.ingest(consent(f"pii-{uid}-7", T, a, consent_channel="email", purpose="marketing", status="granted"))
    api.settle()  # every view includes the consent
    exported = "".join(api.get("/v1/segments/email_marketing_opt_in/members", format=f).text for f in ("csv", "jsonl"))
    assert any(e.lower() in exported for e in emails)  # the export is a campaign feature: it carries addresses
    api.get("/v1/segments/changes", segment="email_marketing_opt_in")
    metrics_text = api.client.get("/metrics").text
    runtime.stop()
    log_text = runtime.log_text()
    assert '"event"' in log_text, "no structured log line at debug level: the check would prove nothing"

    needles = set()
    for e in emails:
        needles |= {e, e.lower(), e.split("@")[0].lower()}
    for p in phones_typed + phones_e164:
        needles |= {p, re.sub(r"\D", "", p), re.sub(r"\D", "", p)[-9:]}
    for needle in sorted(needles):
        assert needle not in metrics_text, f"{needle!r} appears in /metrics"
        assert needle not in log_text, f"{needle!r} appears in the server's logs"


def test_the_openapi_document_lists_every_v1_route(api: Api) -> None:
    response = api.client.get("/openapi.json")
    assert response.status_code == 200, response.text
    paths = response.json()["paths"]
    listed = {(method, path) for path, ops in paths.items() for method in ops if path.startswith("/v1/")}
    expected = V1_ROUTES | (MERGE_ROUTES if api.runtime.name == "embedded" else set())
    assert expected <= listed, f"missing from OpenAPI: {sorted(expected - listed)}"
    assert listed <= expected, f"undocumented in this suite: {sorted(listed - expected)}"
    body = paths["/v1/events"]["post"].get("requestBody", {})
    assert "application/json" in body.get("content", {}), body


def test_cors_answers_only_the_form_endpoint(api: Api) -> None:
    """The API for keys is not for browsers: no CORS grant outside the form endpoint."""
    response = api.client.options("/v1/events", headers={"Origin": FORM_ORIGIN,
                                                         "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in response.headers, response.headers


@pytest.mark.only_runtimes("embedded")  # the HTTP layer is shared by both runtimes
def test_the_api_docs_are_served_by_the_server_itself_never_from_a_cdn(api: Api) -> None:
    for page in ("/docs", "/redoc"):
        html = api.client.get(page)
        assert html.status_code == 200, html.text
        assets = re.findall(r'(?:src|href)="([^"]+)"', html.text)
        assert assets and all(a.startswith("/") for a in assets), assets
        for asset in assets:
            assert api.client.get(asset).status_code == 200, asset
        assert api.client.get("/openapi.json").json()["openapi"].startswith("3.1")
