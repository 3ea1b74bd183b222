"""Synthetic CRM traffic (``touchstream generate``): touchpoints for a seed, and where to send them.

``generate`` yields bodies exactly as POST /v1/events accepts them, in emission order:
event-time order, except late events (emitted after later ones) and sender retries (the
same body again, later). Same options, same traffic. Events name their customer the way
real senders do (the CRM by id, the call centre by phone, the email platform by address),
never ambiguously: a customer's first emitted event carries its id and every identifier,
so the platform links them; events naming it by identifiers alone come at least
``link_after`` events later, which covers a sender with ``concurrency`` batches of
``batch_size`` in flight (``post_http`` never lets more overtake each other).
"""

from __future__ import annotations

import asyncio
import copy
import heapq
import itertools
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from random import Random
from typing import Any

import httpx
import orjson
from rich.console import Console
from rich.progress import Progress, TaskID, TextColumn

from projections.codec import format_instant
from tools.traffic_model import CHANNEL, DAY, Customer, Item, Schedule, population

__all__ = ["TrafficOptions", "DeliveryError", "generate", "labelled", "render", "write_jsonl", "post_http"]


@dataclass(frozen=True, slots=True)
class TrafficOptions:
    customers: int = 1000
    events: int = 20_000  # emitted, retries included
    seed: int = 7
    start: date = date(2025, 1, 1)
    days: int = 365
    duplicate_rate: float = 0.01  # share of events sent again later (same event_id, same body)
    late_rate: float = 0.02  # share of events emitted after events that happened later
    link_after: int = 2000  # >= batch_size x concurrency of whoever posts them


def generate(options: TrafficOptions) -> Iterator[dict[str, Any]]:
    return (event for _, event in labelled(options))


def labelled(o: TrafficOptions) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(customer_id, event)`` in emission order: each event with the customer it is about."""
    start = datetime(o.start.year, o.start.month, o.start.day, tzinfo=UTC).timestamp()
    end = start + o.days * DAY
    people = population(o.customers, o.seed, start, end)
    schedule = iter(Schedule(people, o.seed, start, end, _calibrate(people, o.seed, start, end, o.events)))
    rng, looks, tick = Random(f"{o.seed}:emission"), Random(f"{o.seed}:render"), itertools.count()
    late: list[tuple[int, int, Customer, dict[str, Any]]] = []  # (emit at, tick, customer, body)
    again: list[tuple[int, int, str, dict[str, Any]]] = []  # retries: (emit at, tick, customer id, body)
    first: dict[int, int] = {}  # customer index -> emission number of its first event
    made = emitted = 0
    done = False  # the schedule is exhausted, or what is pending fills the count: drain
    while emitted < o.events:
        done = done or emitted + len(late) + len(again) >= o.events
        if again and (again[0][0] <= emitted or done and not late):
            emitted += 1
            yield heapq.heappop(again)[2:]
            continue
        if late and (late[0][0] <= emitted or done):
            _, _, c, body = heapq.heappop(late)
        elif done:
            return
        elif (item := next(schedule, None)) is None:
            done = True
            continue
        else:
            c = people[item[2]]
            body, made = render(item, c, f"gen-{o.seed}-{made}", looks), made + 1
            if rng.random() < o.late_rate:
                heapq.heappush(late, (emitted + 5 + int(rng.expovariate(1 / 300)), next(tick), c, body))
                continue
        body["customer"] = _reference(c, body, emitted, first, o.link_after, rng)
        if rng.random() < o.duplicate_rate and emitted + 1 + len(late) + len(again) < o.events:
            retry_at = emitted + 1 + int(rng.expovariate(1 / 100))
            heapq.heappush(again, (retry_at, next(tick), c.customer_id, copy.deepcopy(body)))
        emitted += 1
        yield c.customer_id, body


def _calibrate(people: list[Customer], seed: int, start: float, end: float, target: int) -> float:
    """The activity rate at which the period holds ``target`` events, or a few more (dry runs)."""
    expected = sum((end - (c.since or start)) / DAY * (0.95 / (c.segment.purchase_days or 1e9)
                                                       + 1.32 / c.segment.contact_days) for c in people)
    rate, cap = target / max(expected, 1.0), target + target // 10 + 10
    for attempt in range(30):
        got = sum(1 for _ in itertools.islice(Schedule(people, seed, start, end, rate), cap))
        if got >= target and (got < cap or attempt >= 6):
            break
        rate *= min(4.0, max(0.25, target * 1.04 / max(got, 1)))
    return rate


_IDENTIFIERS = {"phone": ("phones",), "sms": ("phones",), "email": ("emails",), "web": ("emails",),
                "mobile_app": ("emails", "phones"), "store": ("external_ids",), "field": ("external_ids",)}
_WITH_ID = {"store": 0.7, "field": 0.9, "mobile_app": 0.6, "web": 0.4, "phone": 0.3, "email": 0.15, "sms": 0.1}


def _reference(c: Customer, body: dict[str, Any], n: int, first: dict[int, int], link_after: int,
               rng: Random) -> dict[str, Any]:
    known: dict[str, list[Any]] = {"emails": list(c.emails), "phones": list(c.phones),
             "external_ids": [{"system": s, "id": i} for s, i in c.external_ids]}
    if c.index not in first:  # introduce the customer: its id and every identifier, linked from now on
        first[c.index] = n
        body["attributes"] = dict(c.profile)
        return {"customer_id": c.customer_id, **known}
    channel = body["channel"]
    ref: dict[str, Any] = {k: [rng.choice(v)] if k in _IDENTIFIERS[channel] and v else [] for k, v in known.items()}
    named = any(ref.values()) and n - first[c.index] >= link_after and rng.random() >= _WITH_ID[channel]
    return {"customer_id": None if named else c.customer_id, **ref}


_SOURCES = {"web": "website", "mobile_app": "mobile-app", "store": "pos", "phone": "call-centre", "field": "field-crm",
            "email": "email-platform", "sms": "sms-gateway", "survey": "survey-tool", "case": "service-desk"}
_FORMS = {"signup": "account_signup", "newsletter": "newsletter_signup", "contact_form": "contact_request"}
_CASE = {"case": "opened", "case_update": "updated", "case_resolve": "resolved"}
_GOODS = ("grocery", "home", "fashion", "electronics", "beauty", "garden")
_REASONS = {"call_in": ("order_status", "billing", "product_info", "delivery", "change_details"),
            "call_out": ("satisfaction_check", "offer", "renewal", "win_back", "appointment")}


def render(item: Item, c: Customer, event_id: str, r: Random) -> dict[str, Any]:
    """The body of one scheduled touchpoint (canonical form, ``customer`` left to the caller)."""
    ts, _, _, kind, d = item
    channel = d.get("channel") or CHANNEL[kind]
    source = d.get("source") or _SOURCES["case" if kind in _CASE else kind if kind == "survey" else channel]
    body: dict[str, Any] = {"event_id": event_id, "type": "", "occurred_at": format_instant(
        datetime.fromtimestamp(ts, UTC)), "source": source, "customer": None, "channel": channel,
        "trigger_id": None, "attributes": {}}
    if kind in _FORMS:
        fields = {"email": c.emails[0]} if c.emails else {"phone": c.phones[0]}
        fields.update(c.profile if kind == "signup" else {"subject": r.choice(_REASONS["call_in"])}
                      if kind == "contact_form" else {})
        body.update(type="web_form", form_id=_FORMS[kind], fields=fields)
    elif kind == "consent":
        body.update(type="consent", consent_channel=d["about"], purpose=d["purpose"], status=d["status"])
    elif kind == "purchase":
        lines = [_line(c.segment.basket, r) for _ in range(1 + min(3, int(r.expovariate(1.0))))]
        cents = sum(q * p for q, p, _ in lines)
        margin = _money(round(cents * r.uniform(0.15, 0.45))) if r.random() < 0.6 else None
        body.update(type="purchase", order_id=f"ord-{event_id}", amount=_money(cents), currency=c.currency,
                    margin=margin, lines=[{"sku": f"SKU-{g[:3].upper()}-{r.randrange(1000):03d}", "quantity": q,
                                           "unit_price": _money(p), "category": g} for q, p, g in lines])
    elif kind in _CASE:
        body.update(type="service_case", case_id=d["case_id"], status=_CASE[kind], severity=d["severity"],
                    category=d["category"])
    elif kind == "survey":
        body.update(type="survey", survey_id=("csat-" if "csat" in d else "nps-") + body["occurred_at"][:4],
                    csat=d.get("csat"), nps=d.get("nps"))
    elif kind in ("campaign", "email"):
        body.update(type="email", status=d.get("status", "sent"), campaign_id=d["campaign"], message_id=d["message"])
    elif kind in _REASONS:
        outcome = d.get("outcome") or ("reached" if r.random() < 0.92 else "callback_requested")
        seconds = d.get("duration") or (r.randint(30, 900) if outcome == "reached" else r.randint(0, 40))
        body.update(type="call", direction="inbound" if kind == "call_in" else "outbound", duration_seconds=seconds,
                    outcome=outcome, reason=d.get("reason") or r.choice(_REASONS[kind]),
                    agent_id=f"agent-{r.randint(1, 40):03d}")
    else:
        field = kind == "field_visit"
        body.update(type="visit", place="customer-site" if field else f"store-{c.profile['city'].lower()}",
                    purpose=r.choice(("account_review", "demo", "negotiation") if field else ("advice", "pickup",
                                     "return", "browse")), initiated_by="company" if field else "customer",
                    duration_minutes=r.randint(30, 120) if field else r.randint(5, 45))
    return body


def _line(basket: float, r: Random) -> tuple[int, int, str]:
    quantity = 1 if r.random() < 0.75 else r.randint(2, 4)
    return quantity, max(50, round(r.lognormvariate(0, 0.6) * basket * 60 / quantity)), r.choice(_GOODS)


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def write_jsonl(events: Iterable[dict[str, Any]], path: Path | str) -> int:
    """One JSON event per line; returns how many were written."""
    count = 0
    with open(path, "wb") as out:
        for count, event in enumerate(events, 1):
            out.write(orjson.dumps(event) + b"\n")
    return count


class DeliveryError(RuntimeError):
    """The platform refused a batch for good (bad key, bad request) or stayed unavailable."""


def post_http(events: Iterable[dict[str, Any]], base_url: str, api_key: str, batch_size: int = 500,
              concurrency: int = 4, *, progress: bool = True, total: int | None = None, retries: int = 8,
              timeout: float = 60.0) -> dict[str, Any]:
    """POST ``{"events": [...]}`` batches to ``{base_url}/v1/events``, ``concurrency`` in flight.

    Batch *i* leaves only once batches up to *i - concurrency* are answered, so no event
    overtakes another by more than ``batch_size x concurrency``. 429/503 are retried after
    ``Retry-After``, connection errors with exponential backoff (event ids make it safe).
    Returns ``{events, accepted, duplicate, rejected, batches, last_position, seconds, events_per_second}``."""
    summary = {"events": 0, "accepted": 0, "duplicate": 0, "rejected": 0, "batches": 0, "last_position": 0}
    url, started = base_url.rstrip("/") + "/v1/events", time.perf_counter()
    window: deque[asyncio.Task[dict[str, Any]]] = deque()
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}

    async def oldest(bar: Progress, task: TaskID) -> None:
        answer = await window.popleft()
        for key in ("accepted", "duplicate", "rejected"):
            summary[key] += answer[key]
        summary["batches"] += 1
        summary["last_position"] = max(summary["last_position"], answer.get("position") or 0)
        bar.update(task, advance=len(answer["results"]))

    async def run() -> None:
        async with httpx.AsyncClient(headers=headers, timeout=timeout,
                                     limits=httpx.Limits(max_connections=concurrency)) as client:
            with Progress(*Progress.get_default_columns(), TextColumn("{task.completed} events"),
                          console=Console(stderr=True), disable=not progress) as bar:
                task, iterator = bar.add_task("posting", total=total), iter(events)
                try:
                    while batch := list(itertools.islice(iterator, batch_size)):
                        if len(window) >= concurrency:
                            await oldest(bar, task)
                        summary["events"] += len(batch)
                        body = orjson.dumps({"events": batch})
                        window.append(asyncio.create_task(_send(client, url, body, retries)))
                    while window:
                        await oldest(bar, task)
                finally:
                    for pending in window:
                        pending.cancel()

    asyncio.run(run())
    seconds = time.perf_counter() - started
    return {**summary, "seconds": round(seconds, 3), "events_per_second": round(summary["events"] / seconds)}


async def _send(client: httpx.AsyncClient, url: str, body: bytes, retries: int) -> dict[str, Any]:
    for attempt in range(retries + 1):
        wait = min(30.0, 0.25 * 2**attempt)
        try:
            response = await client.post(url, content=body)
        except httpx.TransportError as error:
            failure = f"{type(error).__name__}: {error}"
        else:
            if response.status_code in (200, 422) and "results" in (answer := response.json()):
                return answer
            failure = f"answered {response.status_code}: {response.text[:300]}"
            if response.status_code not in (429, 503):
                break
            try:  # Retry-After in seconds, as the platform sends it
                wait = min(60.0, max(0.0, float(response.headers.get("Retry-After", ""))))
            except ValueError:
                pass
        if attempt < retries:
            await asyncio.sleep(wait)
    raise DeliveryError(f"POST {url} {failure}")
