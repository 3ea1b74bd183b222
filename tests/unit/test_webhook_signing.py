"""Webhook signatures as a receiver checks them, and the retry policy's arithmetic."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from services.nbc.signing import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    MalformedSignature,
    ReplayCache,
    ReplayedDelivery,
    SignatureMismatch,
    StaleTimestamp,
    sign,
    signed_headers,
    verify,
)
from services.nbc.webhook_policy import attempt_result, backoff_delay, is_retryable, retry_after_seconds

SECRET = "whsec-current-0123456789"
OLD_SECRET = "whsec-previous-0123456789"
BODY = b'{"trigger_id":"5f0c-1","channel":"call","action":"call_back"}'
T = 1_795_000_000


def headers(body: bytes = BODY, secrets: tuple[str, ...] = (SECRET,), at: int = T, delivery: str = "5f0c-1"):
    return signed_headers(body, delivery, list(secrets), at)


def test_a_delivery_signed_with_the_receivers_secret_is_accepted_and_names_its_trigger() -> None:
    sent = headers()
    assert sent["Touchstream-Event"] == "trigger" and sent[DELIVERY_HEADER] == "5f0c-1"
    assert sent[SIGNATURE_HEADER].startswith(f"t={T},v1=")
    assert verify(SECRET, sent, BODY, now=T + 5) == "5f0c-1"


def test_header_names_are_matched_whatever_their_case() -> None:
    lowered = {k.lower(): v for k, v in headers().items()}
    assert verify([SECRET], lowered, BODY, now=T) == "5f0c-1"


def test_a_tampered_body_is_refused() -> None:
    with pytest.raises(SignatureMismatch, match="no v1 signature matches the body under any of the 1 secret"):
        verify(SECRET, headers(), BODY.replace(b"call_back", b"call_now!"), now=T)


def test_a_body_signed_with_another_secret_is_refused() -> None:
    with pytest.raises(SignatureMismatch):
        verify("whsec-someone-else-0123456789", headers(), BODY, now=T)


def test_while_rotating_both_signatures_are_sent_and_either_secret_verifies() -> None:
    sent = headers(secrets=(SECRET, OLD_SECRET))
    assert sent[SIGNATURE_HEADER].count("v1=") == 2
    assert verify(OLD_SECRET, sent, BODY, now=T) == "5f0c-1"  # receivers not yet updated
    assert verify(SECRET, sent, BODY, now=T) == "5f0c-1"  # receivers already updated


def test_a_receiver_holding_both_secrets_accepts_a_sender_signing_with_only_one() -> None:
    assert verify([SECRET, OLD_SECRET], headers(secrets=(OLD_SECRET,)), BODY, now=T) == "5f0c-1"


def test_a_timestamp_older_than_the_tolerance_is_refused() -> None:
    with pytest.raises(StaleTimestamp, match=r"timestamp \d+ is 301 s behind this receiver's clock, beyond the 300 s"):
        verify(SECRET, headers(), BODY, now=T + 301)
    assert verify(SECRET, headers(), BODY, now=T + 300) == "5f0c-1"


def test_a_timestamp_from_the_future_beyond_the_tolerance_is_refused() -> None:
    with pytest.raises(StaleTimestamp, match="is 61 s ahead of this receiver's clock, beyond the 60 s tolerance"):
        verify(SECRET, headers(), BODY, now=T - 61, tolerance=60)


def test_a_replayed_delivery_is_refused_once_seen() -> None:
    seen = ReplayCache()
    assert verify(SECRET, headers(), BODY, now=T, seen=seen) == "5f0c-1"
    with pytest.raises(ReplayedDelivery, match="delivery 5f0c-1 was already received"):
        verify(SECRET, headers(), BODY, now=T + 1, seen=seen)
    # a retry of the same trigger is signed afresh, and is still the same delivery
    with pytest.raises(ReplayedDelivery):
        verify(SECRET, headers(at=T + 30), BODY, now=T + 30, seen=seen)


def test_a_delivery_forgotten_after_failed_processing_is_taken_again() -> None:
    seen = ReplayCache()
    verify(SECRET, headers(), BODY, now=T, seen=seen)
    seen.forget("5f0c-1")
    assert verify(SECRET, headers(at=T + 2), BODY, now=T + 2, seen=seen) == "5f0c-1"


def test_the_replay_cache_forgets_after_its_ttl() -> None:
    seen = ReplayCache(ttl_seconds=600)
    assert seen.first_time("a", now=0) and not seen.first_time("a", now=599)
    assert seen.first_time("a", now=600)


def test_a_replay_under_another_delivery_id_is_refused_and_does_not_shadow_that_id() -> None:
    seen = ReplayCache()
    forged = {**headers(), DELIVERY_HEADER: "another-trigger"}
    with pytest.raises(MalformedSignature, match="Touchstream-Delivery is not the trigger_id of the signed body"):
        verify(SECRET, forged, BODY, now=T, seen=seen)
    other = b'{"trigger_id":"another-trigger"}'
    assert verify(SECRET, headers(other, delivery="another-trigger"), other, now=T, seen=seen) == "another-trigger"


def test_an_unauthentic_request_never_reaches_the_replay_cache() -> None:
    seen = ReplayCache()
    with pytest.raises(SignatureMismatch):
        verify("whsec-someone-else-0123456789", headers(), BODY, now=T, seen=seen)
    assert verify(SECRET, headers(), BODY, now=T, seen=seen) == "5f0c-1"


@pytest.mark.parametrize(("value", "message"), [
    (None, "missing Touchstream-Signature header"),
    ("", "missing Touchstream-Signature header"),
    ("v1=abc", "no t=<unix seconds>"),
    (f"t={T}", "no v1= signature"),
    (f"t={T},t={T},v1=ab", "more than one t="),
    (f"t={T},v0=ab", "'v0=ab' is not t=<unix seconds> or v1=<hex HMAC-SHA256>"),
    ("t=1a2b,v1=ab", "t= is not whole unix seconds"),
    (f"t={T},v1=ABCDEF", "is not t=<unix seconds> or v1=<hex HMAC-SHA256>"),
])
def test_a_malformed_signature_header_is_refused_with_the_reason(value: str | None, message: str) -> None:
    sent = {k: v for k, v in headers().items() if k != SIGNATURE_HEADER}
    if value is not None:
        sent[SIGNATURE_HEADER] = value
    with pytest.raises(MalformedSignature, match=message.replace("(", r"\(").replace(")", r"\)")):
        verify(SECRET, sent, BODY, now=T)


def test_a_delivery_without_its_id_is_refused() -> None:
    sent = {k: v for k, v in headers().items() if k != DELIVERY_HEADER}
    with pytest.raises(MalformedSignature, match="missing Touchstream-Delivery header"):
        verify(SECRET, sent, BODY, now=T)


def test_signing_and_verifying_need_a_secret() -> None:
    with pytest.raises(ValueError, match="at least one secret"):
        sign(BODY, [], T)
    with pytest.raises(ValueError, match="at least one secret"):
        verify([], headers(), BODY, now=T)


# -- the retry policy --------------------------------------------------------------------
@pytest.mark.parametrize(("status", "result", "retry"), [
    (200, "ok", False), (204, "ok", False), (400, "client_error", False), (404, "client_error", False),
    (410, "client_error", False), (301, "client_error", False), (408, "throttled", True),
    (429, "throttled", True), (500, "server_error", True), (503, "server_error", True),
])
def test_what_each_status_means(status: int, result: str, retry: bool) -> None:
    assert attempt_result(status) == result and is_retryable(result) is retry


def test_timeouts_and_connection_errors_are_retried() -> None:
    assert is_retryable("timeout") and is_retryable("connection_error")


def test_backoff_doubles_within_its_jitter_range_up_to_the_cap() -> None:
    assert [backoff_delay(n, 1.0, 10.0, 0.0) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert [backoff_delay(n, 1.0, 10.0, 0.999999) for n in range(1, 6)] == pytest.approx([1, 2, 4, 8, 10], rel=1e-5)
    # the least an attempt can wait is the most the one before it could have waited
    for n in range(1, 10):
        assert backoff_delay(n + 1, 0.3, 1000.0, 0.0) == pytest.approx(backoff_delay(n, 0.3, 1000.0, 1.0))


def test_retry_after_lengthens_the_wait_up_to_the_cap() -> None:
    assert backoff_delay(1, 1.0, 300.0, 0.0, retry_after=30.0) == 30.0
    assert backoff_delay(1, 1.0, 300.0, 0.0, retry_after=0.0) == 0.5
    assert backoff_delay(1, 1.0, 300.0, 0.0, retry_after=3600.0) == 300.0


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    assert retry_after_seconds("120", now=0) == 120.0
    assert retry_after_seconds("Sun, 06 Nov 1994 08:49:37 GMT", now=784111767) == 10.0
    assert retry_after_seconds("Sun, 06 Nov 1994 08:49:37 GMT", now=784111787) == 0.0
    assert retry_after_seconds("soon", now=0) is None and retry_after_seconds(None, now=0) is None


# -- the receiver snippet integrators copy (docs/TRIGGERS.md) -----------------------------
def receiver_snippet() -> dict[str, object]:
    text = (Path(__file__).resolve().parents[2] / "docs" / "TRIGGERS.md").read_text(encoding="utf-8")
    code = text.split("<!-- receiver-snippet:", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, object] = {}
    exec(compile(code, "docs/TRIGGERS.md", "exec"), namespace)  # noqa: S102 - our own documentation
    return namespace


def test_the_documented_receiver_accepts_what_touchstream_sends_and_refuses_forgeries() -> None:
    verified = receiver_snippet()["verified_trigger"]
    now = int(time.time())
    sent = {k.lower(): v for k, v in headers(at=now, secrets=(SECRET, OLD_SECRET)).items()}
    assert verified([OLD_SECRET], sent, BODY)["trigger_id"] == "5f0c-1"  # type: ignore[operator]
    for secrets, body, changed, reason in [
        (["whsec-someone-else-0123456789"], BODY, {}, "signature does not match"),
        ([SECRET], BODY + b" ", {}, "signature does not match"),
        ([SECRET], BODY, {"touchstream-delivery": "other"}, "is not the signed trigger's id"),
    ]:
        with pytest.raises(ValueError, match=reason):
            verified(secrets, {**sent, **changed}, body)  # type: ignore[operator]
    stale = {k.lower(): v for k, v in headers(at=now - 301).items()}
    with pytest.raises(ValueError, match="timestamp outside the tolerance"):
        verified([SECRET], stale, BODY)  # type: ignore[operator]
