"""Trigger delivery on every runtime: a contact form's call-back trigger reaches the call
centre's webhook signed (verified here as an integrator would), the stream serves it, and
a channel whose receiver refuses it keeps a dead letter an operator can read."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from services.nbc.signing import ReplayCache, SignatureError, verify
from tests.support.api import Api, consent, purchase, touchpoint, unique, wait_until
from tools.bench.server import free_port

pytestmark = pytest.mark.e2e

SECRET = "whsec-e2e-0123456789abcdef"


class Hooks:
    """Channel systems on loopback: /call accepts, /email refuses every delivery (400)."""

    def __init__(self) -> None:
        self.seen = ReplayCache()
        self.delivered: list[dict[str, Any]] = []
        self.refused: list[str] = []
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    verify(SECRET, dict(self.headers), body, seen=hooks.seen)
                except SignatureError as error:
                    hooks.refused.append(str(error))
                    self.send_response(401)
                    self.end_headers()
                    return
                if self.path == "/email":
                    self.send_response(400)
                    self.end_headers()
                    return
                hooks.delivered.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    served = Hooks()
    yield served
    served.server.shutdown()


def test_a_call_back_is_delivered_signed_streamed_and_a_refused_one_is_a_dead_letter(start_runtime, hooks) -> None:  # type: ignore[no-untyped-def]
    runtime = start_runtime({
        "TOUCHSTREAM_WEBHOOK_URLS": json.dumps({"call": hooks.url("/call"), "email": hooks.url("/email")}),
        "TOUCHSTREAM_WEBHOOK_SECRETS": SECRET,
        "TOUCHSTREAM_WEBHOOK_MAX_ATTEMPTS": "2",
        "TOUCHSTREAM_WEBHOOK_BACKOFF_BASE_SECONDS": "0.05",
    })
    api = Api(runtime)
    uid = f"hook-{unique()}"
    me = {"customer_id": uid}
    now = datetime.now(UTC).replace(microsecond=0)
    buyer = {"customer_id": f"{uid}-b"}
    api.ingest(touchpoint("web_form", f"{uid}-f", now - timedelta(minutes=2), customer=me, channel="web",
                          form_id="contact"))
    api.ingest(consent(f"{uid}-k", now - timedelta(minutes=3), buyer, consent_channel="email", purpose="marketing",
                       status="granted"))
    api.ingest(purchase(f"{uid}-p", now - timedelta(minutes=1), buyer, order_id=f"{uid}-o", amount="30.00"))

    delivered = wait_until(lambda: [d for d in hooks.delivered if d["customer_id"] == uid] or None, timeout=30)
    [callback] = delivered
    assert (callback["rule"]["id"], callback["channel"]) == ("callback_after_contact_form", "call")
    assert hooks.refused == []

    # the welcome email went to a receiver that refuses it: a dead letter with the reason
    letters = wait_until(lambda: [d for d in api.get("/v1/triggers/dead-letters", channel="email").json()
                                  ["dead_letters"] if d["trigger"]["customer_id"] == buyer["customer_id"]] or None,
                          timeout=30)
    [letter] = letters
    assert (letter["trigger"]["rule"]["id"], letter["status"], letter["outcome"]) == ("welcome", 400, "failed_permanent")

    figures = {r["rule"]: r for r in api.get("/v1/analytics/triggers").json()["rules"]}
    assert figures["callback_after_contact_form"]["delivered"] >= 1

    # the stream serves the same trigger, id = the cursor past it
    with api.client.stream("GET", "/v1/triggers/stream", params={"channel": "call", "customer_id": uid},
                           headers={"Authorization": f"Bearer {runtime.keys.read}"}, timeout=10) as stream:
        lines: list[str] = []
        for line in stream.iter_lines():
            lines.append(line)
            if line.startswith("data: "):
                break
    data = json.loads(next(line for line in lines if line.startswith("data: "))[len("data: "):])
    assert data["trigger_id"] == callback["trigger_id"]
    assert any(line.startswith("id: ") for line in lines)

