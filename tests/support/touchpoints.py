"""Builders of typed touchpoints for tests: realistic defaults, override what matters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from projections.touchpoints import (
    Call,
    Channel,
    Consent,
    CustomerRef,
    Email,
    Purchase,
    Refund,
    ServiceCase,
    Survey,
    Visit,
    WebForm,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def at(days: float = 0, hours: float = 0) -> datetime:
    return T0 + timedelta(days=days, hours=hours)


def _envelope(event_id: str, when: datetime, ref: CustomerRef | None, channel: Channel, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "occurred_at": when,
        "received_at": when,
        "source": "test",
        "customer": ref or CustomerRef(customer_id="c-1"),
        "channel": channel,
        **extra,
    }


def purchase(event_id: str, when: datetime = T0, amount: str = "100.00", currency: str = "EUR",
             margin: str | None = None, ref: CustomerRef | None = None, **extra: Any) -> Purchase:
    return Purchase(**_envelope(event_id, when, ref, Channel.WEB, **extra), order_id=f"o-{event_id}",
                    amount=Decimal(amount), currency=currency, margin=None if margin is None else Decimal(margin))


def refund(event_id: str, when: datetime = T0, order_id: str = "o-1", amount: str = "10.00", currency: str = "EUR",
           margin: str | None = None, ref: CustomerRef | None = None, **extra: Any) -> Refund:
    return Refund(**_envelope(event_id, when, ref, Channel.WEB, **extra), order_id=order_id,
                  amount=Decimal(amount), currency=currency, margin=None if margin is None else Decimal(margin))


def call(event_id: str, when: datetime = T0, direction: str = "outbound", outcome: str = "reached",
         ref: CustomerRef | None = None, **extra: Any) -> Call:
    return Call(**_envelope(event_id, when, ref, Channel.PHONE, **extra), direction=direction, outcome=outcome)


def email(event_id: str, when: datetime = T0, status: str = "sent", ref: CustomerRef | None = None) -> Email:
    return Email(**_envelope(event_id, when, ref, Channel.EMAIL), status=status)


def visit(event_id: str, when: datetime = T0, initiated_by: str = "company", ref: CustomerRef | None = None) -> Visit:
    return Visit(**_envelope(event_id, when, ref, Channel.FIELD), place="Lyon", purpose="review",
                 initiated_by=initiated_by)


def case(event_id: str, case_id: str, status: str, when: datetime = T0, severity: str = "medium",
         category: str | None = None, ref: CustomerRef | None = None) -> ServiceCase:
    return ServiceCase(**_envelope(event_id, when, ref, Channel.PHONE), case_id=case_id, status=status,
                       severity=severity, category=category)


def survey(event_id: str, when: datetime = T0, csat: int | None = None, nps: int | None = None,
           ref: CustomerRef | None = None) -> Survey:
    return Survey(**_envelope(event_id, when, ref, Channel.EMAIL), csat=csat, nps=nps)


def consent(event_id: str, status: str, when: datetime = T0, channel: str = "email", purpose: str = "marketing",
            ref: CustomerRef | None = None) -> Consent:
    return Consent(**_envelope(event_id, when, ref, Channel.WEB), consent_channel=channel, purpose=purpose,
                   status=status)


def web_form(event_id: str, when: datetime = T0, fields: dict[str, str] | None = None,
             ref: CustomerRef | None = None) -> WebForm:
    return WebForm(**_envelope(event_id, when, ref, Channel.WEB), form_id="contact",
                   fields=tuple(sorted((fields or {}).items())))
