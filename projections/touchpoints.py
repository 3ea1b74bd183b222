"""Touchpoints: the immutable facts a customer interaction leaves behind.

One touchpoint type = one frozen dataclass = one Avro schema in ``schemas/touchpoint/``.
Every touchpoint carries the same envelope (who, when, where from, which channel, and
optionally which trigger it answers); the subclass adds what is specific to the type.

Time is data: ``occurred_at`` is when it happened (event time), ``received_at`` when the
platform accepted it. Both are timezone-aware. Nothing here reads a clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

__all__ = [
    "Channel",
    "CustomerRef",
    "ExternalId",
    "Touchpoint",
    "Call",
    "Email",
    "Visit",
    "WebForm",
    "PurchaseLine",
    "Purchase",
    "Refund",
    "ServiceCase",
    "Survey",
    "Consent",
    "TOUCHPOINT_TYPES",
]


class Channel(enum.StrEnum):
    """Where a touchpoint happened (the seeds' channels)."""

    PHONE = "phone"
    EMAIL = "email"
    SMS = "sms"
    MAIL = "mail"
    WEB = "web"
    MOBILE_APP = "mobile_app"
    STORE = "store"
    FIELD = "field"
    IVR = "ivr"
    ATM = "atm"
    ONLINE_BANKING = "online_banking"
    EVENT = "event"


@dataclass(frozen=True, slots=True)
class ExternalId:
    """An identifier of the customer in another system (CRM, e-shop, loyalty card)."""

    system: str
    id: str


@dataclass(frozen=True, slots=True)
class CustomerRef:
    """How an event names its customer: an id, identifiers, or both.

    Emails and phones are already normalised (lower-case email, E.164 phone) by the
    shell that accepted the event; the core compares them as opaque strings.
    """

    customer_id: str | None = None
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    external_ids: tuple[ExternalId, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Touchpoint:
    """The envelope shared by every touchpoint type."""

    type = "touchpoint"
    event_id: str
    occurred_at: datetime
    received_at: datetime
    source: str
    customer: CustomerRef
    channel: Channel
    trigger_id: str | None = None
    attributes: tuple[tuple[str, str], ...] = ()
    """Profile attributes the event carries (name, city, language, time zone...)."""

    @property
    def initiated_by_company(self) -> bool:
        """True when the company reached out (counts towards contact pressure)."""
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class Call(Touchpoint):
    type = "call"
    direction: str  # inbound | outbound
    duration_seconds: int = 0
    outcome: str  # reached | no_answer | voicemail | busy | callback_requested | declined
    reason: str | None = None
    agent_id: str | None = None

    @property
    def initiated_by_company(self) -> bool:
        return self.direction == "outbound"


@dataclass(frozen=True, slots=True, kw_only=True)
class Email(Touchpoint):
    type = "email"
    status: str  # sent | delivered | opened | clicked | bounced | replied
    campaign_id: str | None = None
    message_id: str | None = None

    @property
    def initiated_by_company(self) -> bool:
        return self.status == "sent"


@dataclass(frozen=True, slots=True, kw_only=True)
class Visit(Touchpoint):
    type = "visit"
    place: str
    purpose: str
    initiated_by: str = "customer"  # customer (walk-in) | company (field sales visit)
    duration_minutes: int | None = None

    @property
    def initiated_by_company(self) -> bool:
        return self.initiated_by == "company"


@dataclass(frozen=True, slots=True, kw_only=True)
class WebForm(Touchpoint):
    type = "web_form"
    form_id: str
    fields: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class PurchaseLine:
    sku: str
    quantity: int
    unit_price: Decimal
    category: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Purchase(Touchpoint):
    type = "purchase"
    order_id: str
    amount: Decimal
    currency: str  # ISO 4217
    margin: Decimal | None = None
    lines: tuple[PurchaseLine, ...] = ()

    def __post_init__(self) -> None:
        # the contract's rule, held by the core too: a record that reached the log by
        # another way (a producer writing the topic itself) is refused, never folded
        if self.amount.is_signed() and self.amount != 0:  # no comparison: a NaN fails in the fold, a dead letter too
            raise ValueError("a purchase amount is never negative: money given back is a refund")


@dataclass(frozen=True, slots=True, kw_only=True)
class Refund(Touchpoint):
    """Money given back for an order (a return, a cancellation, a goodwill gesture), full
    or partial: its own event, never a negative purchase. It lowers the customer's net
    revenue (and margin, by what it states) in its currency; it is no purchase occasion,
    so counts, frequency, purchase days and the lifecycle stage do not move (docs/VALUE.md)."""

    type = "refund"
    order_id: str  # the order it refunds (the purchase's ``order_id``)
    amount: Decimal  # the money given back, > 0
    currency: str  # ISO 4217
    margin: Decimal | None = None  # the margin given back with it, when the seller shares it
    lines: tuple[PurchaseLine, ...] = ()  # what came back
    reason: str | None = None  # returned, cancelled, damaged, goodwill, ...

    def __post_init__(self) -> None:
        if self.amount <= 0:
            raise ValueError("a refund gives back a positive amount")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceCase(Touchpoint):
    type = "service_case"
    case_id: str
    status: str  # opened | updated | resolved
    severity: str = "medium"  # low | medium | high | critical
    category: str | None = None  # complaint | question | incident | request ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Survey(Touchpoint):
    type = "survey"
    survey_id: str | None = None
    csat: int | None = None  # 1..5
    nps: int | None = None  # 0..10


@dataclass(frozen=True, slots=True, kw_only=True)
class Consent(Touchpoint):
    type = "consent"
    consent_channel: str  # the channel the consent is about (email, sms, phone, mail...)
    purpose: str  # marketing | service | profiling ...
    status: str  # granted | withdrawn

    @property
    def granted(self) -> bool:
        return self.status == "granted"


TOUCHPOINT_TYPES: dict[str, type[Touchpoint]] = {
    cls.type: cls
    for cls in (Call, Email, Visit, WebForm, Purchase, Refund, ServiceCase, Survey, Consent)
}

# The enumerations the contracts allow, stated once for validators and schemas.
CALL_DIRECTIONS = ("inbound", "outbound")
CALL_OUTCOMES = ("reached", "no_answer", "voicemail", "busy", "callback_requested", "declined")
EMAIL_STATUSES = ("sent", "delivered", "opened", "clicked", "bounced", "replied")
VISIT_INITIATORS = ("customer", "company")
CASE_STATUSES = ("opened", "updated", "resolved")
CASE_SEVERITIES = ("low", "medium", "high", "critical")
CONSENT_STATUSES = ("granted", "withdrawn")
