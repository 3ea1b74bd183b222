"""Desk sessions (services.desk.session): the signed cookie and the CSRF token."""

from __future__ import annotations

import time

import pytest
from starlette.requests import Request

from services.api.auth import KeyRing
from services.desk.session import COOKIE, DeskSessions
from services.settings import Settings

KEYS = {"agent-key-1": ["read", "ingest"], "viewer-key-2": ["read"]}


def _request(cookie: str | None = None, origin: str | None = None) -> Request:
    headers = [] if cookie is None else [(b"cookie", f"{COOKIE}={cookie}".encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    return Request({"type": "http", "method": "POST", "scheme": "http", "server": ("127.0.0.1", 8080),
                    "path": "/desk", "headers": [(b"host", b"127.0.0.1:8080"), *headers]})


def _sessions(keys: dict[str, list[str]] = KEYS, hours: float = 8.0) -> DeskSessions:
    return DeskSessions(KeyRing(Settings(api_keys=keys)), b"s" * 32, hours)


def test_a_signed_session_names_its_key_by_label_and_never_holds_the_key() -> None:
    sessions = _sessions()
    agent = sessions.keys.identify("agent-key-1")
    assert agent is not None
    token = sessions.token(agent)
    assert "agent-key-1" not in token
    assert sessions.principal(_request(token)) == agent


@pytest.mark.parametrize("tamper", [
    lambda t: t[:-1] + ("0" if t[-1] != "0" else "1"),  # signature changed
    lambda t: "key-0000000000" + t[t.index("."):],  # another label, same signature
    lambda t: t.split(".")[0] + ".9999999999." + t.split(".")[2],  # a later expiry, same signature
    lambda t: "",
    lambda t: "garbage",
])
def test_a_forged_session_is_no_session(tamper: object) -> None:
    sessions = _sessions()
    token = sessions.token(sessions.keys.identify("agent-key-1"))  # type: ignore[arg-type]
    assert sessions.principal(_request(tamper(token))) is None  # type: ignore[operator]


def test_an_expired_session_or_a_removed_key_ends_the_session() -> None:
    sessions = _sessions(hours=1 / 3600)
    token = sessions.token(sessions.keys.identify("agent-key-1"))  # type: ignore[arg-type]
    time.sleep(1.1)
    assert sessions.principal(_request(token)) is None
    current = _sessions()
    token = current.token(current.keys.identify("agent-key-1"))  # type: ignore[arg-type]
    without = DeskSessions(KeyRing(Settings(api_keys={"viewer-key-2": ["read"]})), b"s" * 32, 8)
    assert without.principal(_request(token)) is None  # same secret, the key is gone


def test_the_csrf_token_belongs_to_its_session_and_its_origin() -> None:
    sessions = _sessions()
    token = sessions.token(sessions.keys.identify("agent-key-1"))  # type: ignore[arg-type]
    mine = _request(token)
    csrf = sessions.csrf(mine)
    assert sessions.csrf_ok(_request(token), csrf)
    assert sessions.csrf_ok(_request(token, origin="http://127.0.0.1:8080"), csrf)
    assert not sessions.csrf_ok(_request(token, origin="https://evil.example"), csrf)
    assert not sessions.csrf_ok(_request(token), None) and not sessions.csrf_ok(_request(token), "forged")
    other = sessions.token(sessions.keys.identify("viewer-key-2"))  # type: ignore[arg-type]
    assert not sessions.csrf_ok(_request(other), csrf)  # another session's token
