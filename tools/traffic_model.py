"""Synthetic CRM traffic, the model: a customer population and the touchpoints it makes.

Segments drive how often a customer buys and how much (frequent, regular, occasional,
one-off); each customer also has a contact rhythm (campaign emails, only with marketing
consent; calls; web forms; store and field visits; consent changes) and service cases that
open, move and get resolved (faster when severe), then maybe a CSAT or NPS survey. New
customers sign up inside the period (a web form, then consent grants). ``Schedule`` draws
the timing and every fact later events depend on; ``tools.traffic`` renders the bodies.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from random import Random
from typing import Any, NamedTuple

import phonenumbers

__all__ = ["DAY", "Segment", "SEGMENTS", "Customer", "Item", "population", "Schedule"]

DAY = 86_400.0


# Mean days between purchases (0: one purchase only), median basket, mean days between other contacts.
Segment = NamedTuple("Segment", [("name", str), ("share", float), ("purchase_days", float), ("basket", float),
                                 ("contact_days", float)])
SEGMENTS = (Segment("frequent", 0.12, 12, 45, 9), Segment("regular", 0.28, 40, 80, 16),
            Segment("occasional", 0.38, 120, 120, 30), Segment("one_off", 0.22, 0, 150, 60))


@dataclass(frozen=True, slots=True)
class Customer:
    index: int
    customer_id: str
    emails: tuple[str, ...]
    phones: tuple[str, ...]
    external_ids: tuple[tuple[str, str], ...]
    segment: Segment
    since: float | None  # sign-up time (epoch seconds) in the period; None = already a customer
    currency: str
    profile: dict[str, str]
    field_managed: bool  # has an account manager who visits


_FIRST = "ana lucas emma hugo lea louis chloe jules manon arthur camille paul ines leo sarah adam julie nathan".split()
_LAST = "martin bernard dubois thomas robert richard petit durand leroy moreau simon laurent garcia roux".split()
_CITIES = "paris lyon marseille toulouse nantes lille bordeaux strasbourg rennes nice".split()
_DOMAINS = ("example.com", "example.org", "example.net", "mail.example.com")


def population(count: int, seed: int, start: float, end: float) -> list[Customer]:
    rng, used, people = Random(f"{seed}:population"), set[str](), []
    for i in range(count):
        first, last, city = rng.choice(_FIRST), rng.choice(_LAST), rng.choice(_CITIES)
        emails: tuple[str, ...] = (f"{first}.{last}.{i}@{rng.choice(_DOMAINS)}",) if rng.random() < 0.93 else ()
        if emails and rng.random() < 0.08:
            emails += (f"{first[0]}.{last}.{i}@work.example.com",)
        phones = (_phone(rng, used),) if rng.random() < 0.85 or not emails else ()
        external = (("crm", f"CRM-{seed}-{i:06d}"),) if rng.random() < 0.4 else ()
        segment = rng.choices(SEGMENTS, [s.share for s in SEGMENTS])[0]
        since = None if rng.random() < 0.65 else start + rng.uniform(0, 0.9) * (end - start)
        currency = "GBP" if rng.random() < 0.08 else "EUR"
        profile = {"first_name": first.title(), "last_name": last.title(), "city": city.title(),
                   "language": "en" if currency == "GBP" else "fr"}
        people.append(Customer(i, f"cust-{seed}-{i:06d}", emails, phones, external, segment, since,
                               currency, profile, rng.random() < 0.08))
    return people


def _phone(rng: Random, used: set[str]) -> str:
    while True:
        text = f"+336{rng.randrange(10**8):08d}"
        if text not in used and phonenumbers.is_valid_number(phonenumbers.parse(text)):
            used.add(text)
            return text


HOURS = {"web": (7, 23), "mobile_app": (7, 23), "email": (6, 22), "store": (9, 19), "phone": (9, 19),
         "field": (9, 18), "sms": (9, 20)}
_BUY = (("web", "store", "mobile_app", "phone", "field"), (45, 30, 15, 5, 5))
_CONTACT = {"campaign": 30, "call_in": 10, "call_out": 8, "contact_form": 6, "newsletter": 4, "store_visit": 12,
            "field_visit": 5, "case": 6, "consent": 3}
CHANNEL = {"campaign": "email", "email": "email", "call_in": "phone", "call_out": "phone", "contact_form": "web",
           "newsletter": "web", "store_visit": "store", "field_visit": "field", "consent": "web"}
_SEVERITY = {"low": 8.0, "medium": 4.0, "high": 1.5, "critical": 0.5}  # typical days to resolve
_OUTCOMES = (("reached", "no_answer", "voicemail", "busy", "callback_requested", "declined"), (45, 25, 15, 5, 5, 5))

Item = tuple[float, int, int, str, dict[str, Any]]  # (when, seq, customer index, kind, details)


def _hour(ts: float, rng: Random, channel: str) -> float:
    return ts - ts % DAY + rng.uniform(*HOURS[channel]) * 3600


class Schedule:
    """Every touchpoint of the population in [start, end), in event-time order.

    ``rate`` scales how often customers buy and interact (``tools.traffic`` picks it so
    the period holds the requested events); a dry run counts exactly what a real one yields."""

    def __init__(self, people: list[Customer], seed: int, start: float, end: float, rate: float):
        self.people, self.seed, self.end, self.rate = people, seed, end, rate
        self.rng, self.now, self.seq, self.cases = Random(f"{seed}:schedule"), start, 0, itertools.count(1)
        self.heap: list[Item] = []
        self.optin: set[tuple[int, str]] = set()  # (customer, channel) with marketing consent

    def push(self, ts: float, c: Customer, kind: str, **details: Any) -> None:
        if (ts := max(ts, self.now)) < self.end:
            self.seq += 1
            heapq.heappush(self.heap, (ts, self.seq, c.index, kind, details))

    def __iter__(self) -> Iterator[Item]:
        start = self.now
        for c in self.people:  # nothing of a new customer happens before its sign-up
            self.now = start if c.since is None else c.since
            self._begin(c, self.now)
        self.now = start
        while self.heap:
            item = heapq.heappop(self.heap)
            self.now = item[0]
            if self._follow(item, self.people[item[2]], self.rng, item[4]):
                yield item

    def _begin(self, c: Customer, t0: float) -> None:
        r, seg = self.rng, c.segment
        if c.since is not None:
            self.push(c.since, c, "signup", channel=r.choice(("web", "web", "mobile_app")))
        soon = c.since is not None and r.random() < 0.75
        if not seg.purchase_days:
            self._buy(c, t0 + r.uniform(0.01, 3) * DAY if soon else r.uniform(t0, self.end), renew=False)
        else:
            self._buy(c, t0 + (r.uniform(0.01, 5) * DAY if soon else r.random() * self._gap(seg.purchase_days)))
        self._contact(c, t0 + r.random() * self._gap(c.segment.contact_days))

    def _case_id(self) -> str:
        return f"case-{self.seed}-{next(self.cases)}"

    def _gap(self, mean_days: float) -> float:
        return self.rng.gammavariate(2.0, mean_days * DAY / self.rate / 2)

    def _buy(self, c: Customer, ts: float, renew: bool = True, channel: str | None = None) -> None:
        ch = channel or self.rng.choices(*_BUY)[0]
        ch = "web" if ch == "field" and not c.field_managed else ch
        self.push(ts if channel else _hour(ts, self.rng, ch), c, "purchase", channel=ch, renew=renew)

    def _contact(self, c: Customer, ts: float) -> None:
        r = self.rng
        kind = r.choices(tuple(_CONTACT), tuple(_CONTACT.values()))[0]
        if kind in ("call_in", "call_out") and not c.phones or kind == "newsletter" and not c.emails:
            kind = "contact_form"
        kind = "store_visit" if kind == "field_visit" and not c.field_managed else kind
        if kind != "case":
            return self.push(_hour(ts, r, CHANNEL[kind]), c, kind, renew=True)
        channel = r.choice(("phone", "email", "web", "mobile_app", "store") if c.phones else ("web", "store"))
        severity = r.choices(tuple(_SEVERITY), (30, 45, 20, 5))[0]
        category = r.choices(("complaint", "question", "incident", "request"), (25, 35, 20, 20))[0]
        ts, case = _hour(ts, r, "web" if channel in ("email", "mobile_app") else channel), self._case_id()
        if channel == "phone":  # the call that opens the case
            self.push(ts, c, "call_in", reason=category, duration=r.randint(120, 1200))
            ts += 1260
        self.push(ts, c, "case", renew=True, channel=channel, case_id=case, severity=severity, category=category)

    def _follow(self, item: Item, c: Customer, r: Random, d: dict[str, Any]) -> bool:
        """Schedule what ``item`` leads to; False when it does not happen after all."""
        ts, seq, _, kind, _ = item
        if d.pop("renew", False):
            if kind == "purchase":
                self._buy(c, ts + self._gap(c.segment.purchase_days))
            else:
                self._contact(c, ts + self._gap(c.segment.contact_days))
        if kind == "signup":
            for n, (about, purpose, given) in enumerate([("email", "service", bool(c.emails)),
                                                         ("email", "marketing", bool(c.emails) and r.random() < 0.6),
                                                         ("sms", "marketing", bool(c.phones) and r.random() < 0.3)]):
                if given:
                    self.push(ts + 5 + n, c, "consent", channel=d["channel"], about=about, purpose=purpose,
                              status="granted", source="website")
        elif kind == "consent":
            if "status" not in d:  # a change of mind: unsubscribe, SMS STOP, or opt back in
                opted = next((a for a in ("email", "sms") if (c.index, a) in self.optin), None)
                if opted is None and not c.emails:
                    return False
                d.update(about=opted or "email", purpose="marketing", status="withdrawn" if opted else "granted",
                         channel=opted or "web", source="sms-gateway" if opted == "sms" else "preference-centre")
            if d["purpose"] == "marketing":
                (self.optin.add if d["status"] == "granted" else self.optin.discard)((c.index, d["about"]))
        elif kind == "newsletter":
            if (c.index, "email") in self.optin:
                return False
            self.push(ts + 3, c, "consent", channel="web", about="email", purpose="marketing", status="granted",
                      source="website")
        elif kind == "purchase":
            if r.random() < 0.12:
                nps = min(10, max(0, round(r.gauss({"frequent": 9, "regular": 8}.get(c.segment.name, 7), 2))))
                by_sms = c.phones and (d["channel"] == "store" or not c.emails)
                self.push(ts + r.uniform(1, 5) * DAY, c, "survey", nps=nps, channel="sms" if by_sms else "email")
            if r.random() < 0.03:
                self.push(ts + r.uniform(2, 10) * DAY, c, "case", channel="web", case_id=self._case_id(),
                          severity=r.choice(("medium", "high")), category="delivery")
        elif kind == "case":
            days = _SEVERITY[d["severity"]] * DAY
            updated = ts + r.uniform(0.05, 0.8) * days
            if r.random() < 0.5:
                self.push(updated, c, "case_update", **d)
            if r.random() < 0.93:
                resolved = max(updated + 600, ts + r.uniform(0.2, 1.6) * days)
                self.push(resolved, c, "case_resolve", **d)
                score = 5.2 - (resolved - ts) / days - (0.8 if d["category"] == "complaint" else 0) + r.gauss(0, 0.7)
                if r.random() < 0.4:
                    self.push(resolved + r.uniform(0.1, 2) * DAY, c, "survey", csat=min(5, max(1, round(score))),
                              channel="email" if c.emails else "sms")
        elif kind == "campaign":
            if (c.index, "email") not in self.optin:
                return False
            d.update(campaign=datetime.fromtimestamp(ts, UTC).strftime("nl-%G-w%V"),
                     message=f"<{self.seed}.{seq}@news.example.com>")
            bounced = r.random() < 0.04
            delivered = ts + r.uniform(5, 120)
            self.push(delivered, c, "email", status="bounced" if bounced else "delivered", **d)
            if not bounced and r.random() < 0.32:
                self.push(opened := delivered + r.uniform(0.2, 36) * 3600, c, "email", status="opened", **d)
                if r.random() < 0.3:
                    self.push(opened + r.uniform(10, 900), c, "email", status="clicked", **d)
                    if r.random() < 0.1:
                        self._buy(c, opened + r.uniform(900, 5400), renew=False, channel="web")
        elif kind == "call_out":
            d["outcome"] = r.choices(*_OUTCOMES)[0]
            if d["outcome"] == "callback_requested":
                self.push(_hour(ts + DAY, r, "phone"), c, "call_out", reason="callback")
        elif kind == "field_visit" and r.random() < 0.3:
            self._buy(c, ts + r.uniform(0.1, 2) * DAY, renew=False, channel="field")
        return True
