"""Desk sign-in: an API key exchanged for a signed session cookie, and CSRF tokens.

The agent signs in once with an API key (read scope to look, ingest scope to log calls
and outcomes; admin has both). The key itself is never stored in the browser nor put in
a URL: the cookie holds the key's label, an expiry and an HMAC of both under
``desk_session_secret``. Each request looks the label up in the configured keys again, so
removing a key from the settings ends its sessions at once. The cookie is HttpOnly,
SameSite=Strict, scoped to ``/desk`` and Secure over HTTPS.

Every form carries a CSRF token derived from the session (HMAC of it), checked on POST
together with the Origin header when the browser sends one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from fastapi import Request
from fastapi.responses import Response

from services.api.auth import KeyRing, Principal

__all__ = ["COOKIE", "DeskSessions"]

COOKIE = "touchstream_desk"


class DeskSessions:
    def __init__(self, keys: KeyRing, secret: bytes | None, hours: float):
        self.keys = keys
        self.secret = secret or secrets.token_bytes(32)  # unset: sessions last as long as this process
        self.seconds = int(hours * 3600)
        self.by_label = {p.label: p for p in keys.keys.values()}

    def _sign(self, text: str) -> str:
        return hmac.new(self.secret, text.encode(), hashlib.sha256).hexdigest()

    def token(self, principal: Principal) -> str:
        body = f"{principal.label}.{int(time.time()) + self.seconds}"
        return f"{body}.{self._sign(body)}"

    def principal(self, request: Request) -> Principal | None:
        """The signed-in principal, or None (no cookie, forged, expired, key removed)."""
        token = request.cookies.get(COOKIE, "")
        parts = token.rsplit(".", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            return None
        label, expiry, signature = parts
        if not hmac.compare_digest(signature, self._sign(f"{label}.{expiry}")) or int(expiry) < time.time():
            return None
        return self.by_label.get(label)

    def csrf(self, request: Request) -> str:
        return self._sign("csrf:" + request.cookies.get(COOKIE, ""))

    def csrf_ok(self, request: Request, presented: str | None) -> bool:
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
            return False
        return bool(presented) and hmac.compare_digest(presented or "", self.csrf(request))

    def sign_in(self, response: Response, request: Request, principal: Principal) -> None:
        response.set_cookie(COOKIE, self.token(principal), max_age=self.seconds, path="/desk", httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")

    def sign_out(self, response: Response) -> None:
        response.delete_cookie(COOKIE, path="/desk", httponly=True, samesite="strict")
