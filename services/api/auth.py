"""API keys with scopes, and a token-bucket rate limit per key.

Keys come from settings (``TOUCHSTREAM_API_KEYS``), sent as ``Authorization: Bearer <key>``
or ``X-API-Key``. Keys are compared in constant time and never logged: a key is known in
logs and metrics by a short SHA-256 prefix. Missing or unknown key → 401; a key without
the route's scope → 403; over the rate → 429 with ``Retry-After``.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPBearer

from services.settings import Scope, Settings

__all__ = ["Principal", "KeyRing", "RateLimiter", "key_label", "BEARER", "API_KEY_HEADER", "security_of"]

# The two ways to present a key, as OpenAPI security schemes. They only document: the
# key is read and judged by ``KeyRing.authorize`` (auto_error off, so they never answer).
BEARER = HTTPBearer(auto_error=False, scheme_name="bearer", description="an API key: Authorization: Bearer <key>")
API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="apiKey",
                              description="the same key, as a header")


def security_of(scope: Scope) -> list[dict[str, list[str]]]:
    """The OpenAPI security requirement of a route needing ``scope`` (either scheme)."""
    return [{"bearer": [scope]}, {"apiKey": [scope]}]


def key_label(key: str) -> str:
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:10]


@dataclass(frozen=True, slots=True)
class Principal:
    label: str
    scopes: frozenset[str]


class RateLimiter:
    """Token bucket per principal: ``rate`` requests per second, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self.buckets: dict[str, tuple[float, float]] = {}

    def retry_after(self, label: str, cost: float = 1.0) -> float:
        """0 when allowed (and the tokens are taken), else seconds until it would be."""
        now = self.clock()
        tokens, last = self.buckets.get(label, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= cost:
            self.buckets[label] = (tokens - cost, now)
            return 0.0
        self.buckets[label] = (tokens, now)
        return (cost - tokens) / self.rate


class KeyRing:
    def __init__(self, settings: Settings):
        self.keys = {k.encode(): Principal(key_label(k), frozenset(v)) for k, v in settings.api_keys.items()}
        self.limiter = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)

    def identify(self, presented: str | None) -> Principal | None:
        if not presented:
            return None
        candidate = presented.encode()
        found = None
        for key, principal in self.keys.items():  # constant time per key
            if hmac.compare_digest(key, candidate):
                found = principal
        return found

    def authorize(self, request: Request, scope: Scope) -> Principal:
        """The caller's principal, or HTTPException 401/403/429."""
        header = request.headers.get("authorization", "")
        presented = header[7:].strip() if header.lower().startswith("bearer ") else request.headers.get("x-api-key")
        principal = self.identify(presented)
        if principal is None:
            raise HTTPException(401, "missing or unknown API key", headers={"WWW-Authenticate": "Bearer"})
        if scope not in principal.scopes and "admin" not in principal.scopes:
            raise HTTPException(403, f"this key lacks the '{scope}' scope")
        wait = self.limiter.retry_after(principal.label)
        if wait:
            raise HTTPException(429, "rate limit exceeded", headers={"Retry-After": str(math.ceil(wait))})
        return principal

    def require(self, scope: Scope) -> Callable[..., Coroutine[Any, Any, Principal]]:
        """``authorize`` as a FastAPI dependency (for routes off the hot path); the two
        ``Security`` parameters put the route's scheme and scope in the OpenAPI document."""

        async def dependency(request: Request, _bearer: object = Security(BEARER, scopes=[scope]),
                             _header: object = Security(API_KEY_HEADER, scopes=[scope])) -> Principal:
            return self.authorize(request, scope)

        return dependency
