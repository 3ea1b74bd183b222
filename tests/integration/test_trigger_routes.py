"""The trigger feed and its server-sent-events stream over real HTTP: the routes served by
uvicorn (the product's ``DrainingServer``) on loopback, read with httpx.

The routes run on ``TriggerFeedStandIn``, scripted triggers behind ``Platform.triggers``,
so each test states what the feed holds and when it grows;
test_webhook_delivery_embedded.py serves the embedded platform's own triggers.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.trigger_api import READ, Served, events
from tests.support.trigger_feed import TriggerFeedStandIn, trigger

pytestmark = pytest.mark.platform_stand_in


@pytest.fixture
def served() -> Iterator[Served]:
    feed = TriggerFeedStandIn([trigger("call"), trigger("email"), trigger("call", customer_id="c-2")])
    with Served(feed) as running:
        yield running


def test_the_feed_pages_oldest_first_filtered_by_channel_and_customer(served: Served) -> None:
    feed = served.feed
    with httpx.Client(base_url=served.url, headers=READ, timeout=10) as client:
        first = client.get("/v1/triggers", params={"channel": "call", "limit": 1}).json()
        assert first["triggers"] == [feed.items[0]]
        rest = client.get("/v1/triggers", params={"channel": "call", "since": first["next_cursor"]}).json()
        assert rest["triggers"] == [feed.items[2]]
        idle = client.get("/v1/triggers", params={"channel": "call", "since": rest["next_cursor"]}).json()
        assert idle == {"triggers": [], "next_cursor": rest["next_cursor"]}  # stays put when nothing is new
        everything = client.get("/v1/triggers").json()["triggers"]
        assert everything == feed.items
        mine = client.get("/v1/triggers", params={"customer_id": "c-2"}).json()["triggers"]
        assert mine == [feed.items[2]]


def test_an_unknown_channel_a_foreign_cursor_or_a_missing_key_are_refused(served: Served) -> None:
    with httpx.Client(base_url=served.url, headers=READ, timeout=10) as client:
        unknown = client.get("/v1/triggers", params={"channel": "phone"})
        assert unknown.status_code == 422
        message = "'phone' is not a contact channel (one of call, email, sms, visit, web, mail)"
        assert unknown.json()["detail"] == [{"path": "channel", "message": message}]
        foreign = client.get("/v1/triggers", params={"since": "bm90LWEtY3Vyc29y"})
        assert foreign.status_code == 422
        assert foreign.json()["detail"][0]["loc"] == ["query", "since"]  # not of the feed's pattern
        assert client.get("/v1/triggers/stream", params={"since": "bm90LWEtY3Vyc29y"}).status_code == 422
        assert client.get("/v1/triggers/stream", params={"channel": "fax"}).status_code == 422
        assert client.get("/v1/triggers", params={"limit": 0}).status_code == 422
    assert httpx.get(f"{served.url}/v1/triggers").status_code == 401
    assert httpx.get(f"{served.url}/v1/triggers/stream", headers={"X-API-Key": "ts-trigger-ingest-key-01"}
                     ).status_code == 403


def test_the_stream_sends_each_trigger_with_its_cursor_then_new_ones_then_heartbeats(served: Served) -> None:
    feed = served.feed
    with httpx.Client(base_url=served.url, headers=READ, timeout=10) as client, \
            client.stream("GET", "/v1/triggers/stream", params={"channel": "call"}) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.headers["cache-control"] == "no-cache"
        lines = stream.iter_lines()
        retry, first, second = events(lines, 3)
        assert retry == {"retry": "1000"}
        assert (first["event"], first["data"], first["id"]) == ("trigger", feed.items[0], feed.cursor_after(
            feed.items[0]["trigger_id"]))
        assert (second["data"], second["id"]) == (feed.items[2], feed.cursor_after(feed.items[2]["trigger_id"]))
        late = trigger("call")
        feed.append(trigger("sms"), late)
        (third,) = events(lines, 1)
        assert (third["data"], third["id"]) == (late, feed.cursor_after(late["trigger_id"]))
        (beat,) = events(lines, 1)
        assert beat == {"comment": "heartbeat"}


def test_a_client_resumes_after_the_last_event_id_it_saw_which_wins_over_since(served: Served) -> None:
    feed = served.feed
    seen = feed.cursor_after(feed.items[0]["trigger_id"])
    with httpx.Client(base_url=served.url, headers=READ, timeout=10) as client:
        with client.stream("GET", "/v1/triggers/stream", params={"since": seen}) as stream:
            _, resumed = events(stream.iter_lines(), 2)
        assert resumed["data"] == feed.items[1]
        with client.stream("GET", "/v1/triggers/stream", params={"since": "0"},  # the start
                           headers={"Last-Event-ID": seen}) as stream:
            _, resumed = events(stream.iter_lines(), 2)
        assert resumed["data"] == feed.items[1]


def test_the_stream_stops_reading_when_the_client_goes(served: Served) -> None:
    with httpx.Client(base_url=served.url, headers=READ, timeout=10) as client, \
            client.stream("GET", "/v1/triggers/stream", params={"channel": "visit"}) as stream:
        events(stream.iter_lines(), 1)
    reads = served.feed.reads
    deadline = time.monotonic() + 20
    while True:  # the server notices at its next idle check, then stops polling the feed
        time.sleep(0.5)
        if served.feed.reads == reads:
            break
        reads = served.feed.reads
        assert time.monotonic() < deadline, "the stream kept polling after the client left"


def test_a_stop_signal_ends_open_streams_so_the_server_stops_without_waiting_for_them(served: Served) -> None:
    with httpx.Client(base_url=served.url, headers=READ, timeout=10) as client, \
            client.stream("GET", "/v1/triggers/stream") as stream:
        lines = stream.iter_lines()
        events(lines, 4)  # retry + the three triggers: the stream is now idle
        served.server.handle_exit(signal.SIGTERM, None)
        assert served.feed.draining
        rest = list(lines)  # ends: the server closed the stream
        assert all(line == "" or line.startswith(":") for line in rest)
    served.thread.join(20)
    assert not served.thread.is_alive()
