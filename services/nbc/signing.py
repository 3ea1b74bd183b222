"""Signed webhook deliveries: the headers Touchstream sends and the check a receiver runs.

Every delivery carries::

    Touchstream-Event: trigger
    Touchstream-Delivery: <trigger_id>
    Touchstream-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...]

where each ``v1`` is ``HMAC-SHA256(secret, f"{t}." + raw body)`` in hex, one per signing
secret (several while a secret is rotated). The timestamp is inside the signed text, so a
captured request cannot be replayed later than the receiver's tolerance; within it, the
receiver's replay cache rejects a delivery it has already taken.

``verify`` raises one of (all ``SignatureError``, a ``ValueError``):

* ``MalformedSignature`` — a header is missing or not in the form above, or the
  delivery header is not the signed body's ``trigger_id``;
* ``SignatureMismatch`` — no ``v1`` matches the body under any of the receiver's secrets;
* ``StaleTimestamp`` — the timestamp is further from the receiver's clock than the tolerance;
* ``ReplayedDelivery`` — authentic and fresh, but this delivery id was already received
  (a replay, or a retry of a delivery whose answer was lost): answer 2xx and do nothing.

The signature is checked first, so only an authentic request can learn anything about
timestamps or touch the replay cache.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping, Sequence

__all__ = ["SIGNATURE_HEADER", "DELIVERY_HEADER", "EVENT_HEADER", "SignatureError", "MalformedSignature",
           "SignatureMismatch", "StaleTimestamp", "ReplayedDelivery", "ReplayCache", "sign", "signed_headers",
           "verify"]

SIGNATURE_HEADER = "Touchstream-Signature"
DELIVERY_HEADER = "Touchstream-Delivery"
EVENT_HEADER = "Touchstream-Event"
_PAIR = re.compile(r"^(t|v1)=([0-9a-f]+)$")


class SignatureError(ValueError):
    """A delivery the receiver must not act on (see the module docstring)."""


class MalformedSignature(SignatureError): ...


class SignatureMismatch(SignatureError): ...


class StaleTimestamp(SignatureError): ...


class ReplayedDelivery(SignatureError): ...


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), b"%d." % timestamp + body, hashlib.sha256).hexdigest()


def sign(body: bytes, secrets: Sequence[str], timestamp: int) -> str:
    """The ``Touchstream-Signature`` value: one ``v1`` per secret, in the order given."""
    if not secrets:
        raise ValueError("signing needs at least one secret")
    return ",".join([f"t={timestamp}", *(f"v1={_digest(s, timestamp, body)}" for s in secrets)])


def signed_headers(body: bytes, delivery_id: str, secrets: Sequence[str], timestamp: int) -> dict[str, str]:
    return {"Content-Type": "application/json", EVENT_HEADER: "trigger", DELIVERY_HEADER: delivery_id,
            SIGNATURE_HEADER: sign(body, secrets, timestamp)}


class ReplayCache:
    """Delivery ids seen in the last ``ttl_seconds``, in memory.

    One process's memory: receivers running several processes keep the same keys in a
    shared store (e.g. Redis ``SET key 1 NX EX ttl``). ``ttl_seconds`` should be at least
    twice the tolerance, so every request still acceptable is remembered.
    """

    def __init__(self, ttl_seconds: float = 600.0):
        self.ttl = ttl_seconds
        self._expiry: dict[str, float] = {}  # insertion order = expiry order

    def first_time(self, key: str, now: float) -> bool:
        """True (and remembered) if ``key`` was not seen within the ttl."""
        for old in [k for k, until in self._expiry.items() if until <= now]:
            del self._expiry[old]
        if key in self._expiry:
            return False
        self._expiry[key] = now + self.ttl
        return True

    def forget(self, key: str) -> None:
        """Accept ``key`` again: call it when processing a delivery failed, so its retry is taken."""
        self._expiry.pop(key, None)


def _parse(value: str | None) -> tuple[int, list[str]]:
    if not value:
        raise MalformedSignature(f"missing {SIGNATURE_HEADER} header")
    timestamp, candidates = None, []
    for part in value.split(","):
        match = _PAIR.match(part.strip())
        if match is None:
            raise MalformedSignature(f"malformed {SIGNATURE_HEADER} header: {part.strip()[:20]!r} is not "
                                     "t=<unix seconds> or v1=<hex HMAC-SHA256>")
        if match[1] == "t":
            if timestamp is not None:
                raise MalformedSignature(f"malformed {SIGNATURE_HEADER} header: more than one t=")
            timestamp = int(match[2])  # the pattern allows hex digits: int() refuses a-f below
        else:
            candidates.append(match[2])
    if timestamp is None:
        raise MalformedSignature(f"malformed {SIGNATURE_HEADER} header: no t=<unix seconds>")
    if not candidates:
        raise MalformedSignature(f"malformed {SIGNATURE_HEADER} header: no v1= signature")
    return timestamp, candidates


def verify(secrets: str | Sequence[str], headers: Mapping[str, str], body: bytes, *, now: float | None = None,
           tolerance: int = 300, seen: ReplayCache | None = None) -> str:
    """Check a delivery as received (the raw body bytes, before any JSON parsing); the
    delivery id when it may be acted on, else a ``SignatureError`` saying why."""
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    if not keys:
        raise ValueError("verifying needs at least one secret")
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        timestamp, candidates = _parse(lowered.get(SIGNATURE_HEADER.lower()))
    except ValueError as error:
        raise error if isinstance(error, SignatureError) else MalformedSignature(
            f"malformed {SIGNATURE_HEADER} header: t= is not whole unix seconds") from None
    delivery = lowered.get(DELIVERY_HEADER.lower())
    if not delivery:
        raise MalformedSignature(f"missing {DELIVERY_HEADER} header")
    matched = None
    for key in keys:  # every pair is compared, in constant time each
        expected = _digest(key, timestamp, body)
        for candidate in candidates:
            if hmac.compare_digest(expected, candidate):
                matched = candidate
    if matched is None:
        raise SignatureMismatch(f"no v1 signature matches the body under any of the {len(keys)} secret(s)")
    clock = time.time() if now is None else now
    if abs(clock - timestamp) > tolerance:
        direction = "behind" if timestamp < clock else "ahead of"
        raise StaleTimestamp(f"timestamp {timestamp} is {abs(clock - timestamp):.0f} s {direction} this "
                             f"receiver's clock, beyond the {tolerance} s tolerance")
    # The header is not signed; the body's trigger_id is. Were they allowed to differ, a
    # replay under another id would pass the cache and shadow the genuine delivery of that id.
    if _signed_id(body) != delivery:
        raise MalformedSignature(f"{DELIVERY_HEADER} is not the trigger_id of the signed body")
    if seen is not None and not seen.first_time(delivery, clock):
        raise ReplayedDelivery(f"delivery {delivery} was already received")
    return delivery


def _signed_id(body: bytes) -> object:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    return document.get("trigger_id") if isinstance(document, dict) else None
