"""The HTTP contract for touchpoints (pydantic): validation, normalisation, OpenAPI.

Mirrors ``schemas/touchpoint/*/v1.avsc`` field for field (a test holds them together).
What a sender posts is the canonical form (``projections.codec``) without
``received_at``, which the platform stamps. Emails are lower-cased and checked, phones
normalised to E.164 (``phonenumbers``, default region from settings). Unknown fields are
refused, so a typo never silently loses data. Instants, identifiers, text, money and
currencies follow ``services.api.input_rules``; purchase amounts and unit prices are never
negative (money given back is a refund), a zero amount is a free order and counts as a
purchase, and a margin never exceeds its amount.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationInfo, field_validator,
                      model_validator)
from pydantic.json_schema import JsonDict, JsonValue

from projections.codec import format_instant, money
from projections.touchpoints import TOUCHPOINT_TYPES, Channel
from services.api.input_rules import Currency, FreeText, Identifier, Instant, Money, SystemName, Text, check_text

__all__ = ["TouchpointIn", "TOUCHPOINT_ADAPTER", "to_canonical", "normalise_email", "normalise_phone", "set_phone_region"]

_region = {"default": "FR"}


def set_phone_region(region: str) -> None:
    _region["default"] = region


# The everyday address (ASCII, one @, a dotted domain) is checked by this expression; only
# unusual ones (internationalised, quoted) pay for email-validator's full analysis, which
# measured as 14% of the server's CPU when used for every address.
_PLAIN_EMAIL = re.compile(r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                          r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")


def normalise_email(value: str) -> str:
    candidate = value.strip().lower()
    if len(candidate) <= 254 and _PLAIN_EMAIL.fullmatch(candidate):
        return candidate
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as error:
        raise ValueError(f"not a valid email address: {error}") from None


def normalise_phone(value: str) -> str:
    try:
        number = phonenumbers.parse(value, _region["default"])
    except phonenumbers.NumberParseException as error:
        raise ValueError(f"not a phone number: {error}") from None
    if not phonenumbers.is_possible_number(number):
        raise ValueError("not a possible phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


Email = Annotated[str, Field(max_length=320), AfterValidator(check_text), AfterValidator(normalise_email)]
Phone = Annotated[str, Field(max_length=40), AfterValidator(check_text), AfterValidator(normalise_phone)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExternalIdIn(_Strict):
    system: SystemName
    id: Identifier


# The rule of _names_someone, stated in the schema so generated clients know it.
_ONE_OF_EACH: list[JsonValue] = [{"required": [name], "properties": {name: {"minItems": 1}}}
                                 for name in ("emails", "phones", "external_ids")]
_NAMES_SOMEONE: JsonDict = {"anyOf": [{"required": ["customer_id"], "properties": {"customer_id": {"type": "string"}}},
                                      *_ONE_OF_EACH]}


class CustomerRefIn(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_NAMES_SOMEONE)

    customer_id: Identifier | None = None
    emails: list[Email] = Field(default_factory=list, max_length=20)
    phones: list[Phone] = Field(default_factory=list, max_length=20)
    external_ids: list[ExternalIdIn] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _names_someone(self) -> CustomerRefIn:
        if not (self.customer_id or self.emails or self.phones or self.external_ids):
            raise ValueError("name the customer: customer_id, emails, phones or external_ids")
        return self


class _Envelope(_Strict):
    event_id: Identifier
    occurred_at: Instant
    source: Text
    customer: CustomerRefIn
    channel: Channel
    trigger_id: Text | None = None
    attributes: dict[Text, Annotated[FreeText, Field(max_length=1000)]] = Field(default_factory=dict, max_length=100)


class CallIn(_Envelope):
    type: Literal["call"]
    direction: Literal["inbound", "outbound"]
    duration_seconds: Annotated[int, Field(ge=0, le=86_400)] = 0
    outcome: Literal["reached", "no_answer", "voicemail", "busy", "callback_requested", "declined"]
    reason: Text | None = None
    agent_id: Text | None = None


class EmailIn(_Envelope):
    type: Literal["email"]
    status: Literal["sent", "delivered", "opened", "clicked", "bounced", "replied"]
    campaign_id: Text | None = None
    message_id: Text | None = None


class VisitIn(_Envelope):
    type: Literal["visit"]
    place: Text
    purpose: Text
    initiated_by: Literal["customer", "company"] = "customer"
    duration_minutes: Annotated[int, Field(ge=0, le=1440)] | None = None


class WebFormIn(_Envelope):
    type: Literal["web_form"]
    form_id: Text
    fields: dict[Text, Annotated[FreeText, Field(max_length=5000)]] = Field(default_factory=dict, max_length=100)


def _no_negative_price(price: Decimal) -> Decimal:
    if price < 0:
        raise ValueError("a unit price is never negative (a discount lowers the price, a refund is its own event)")
    return price


def _no_negative_purchase(amount: Decimal) -> Decimal:
    # Zero is accepted: a free order (voucher, sample) is an order; it counts as a purchase
    # and adds nothing to revenue.
    if amount < 0:
        raise ValueError("a purchase amount is never negative: money given back is a refund, "
                         "sent as its own event (\"type\": \"refund\" with the order_id it refunds), "
                         "not a negative purchase")
    return amount


class PurchaseLineIn(_Strict):
    sku: Text
    quantity: Annotated[int, Field(ge=1, le=1_000_000)]
    unit_price: Annotated[Money, AfterValidator(_no_negative_price)]
    category: Text | None = None


class PurchaseIn(_Envelope):
    type: Literal["purchase"]
    order_id: Text
    amount: Annotated[Money, AfterValidator(_no_negative_purchase)]
    currency: Currency
    margin: Money | None = None
    lines: list[PurchaseLineIn] = Field(default_factory=list, max_length=500)

    @field_validator("margin")
    @classmethod
    def _margin_within_amount(cls, margin: Decimal | None, info: ValidationInfo) -> Decimal | None:
        amount = info.data.get("amount")
        if margin is not None and amount is not None and margin > amount:
            raise ValueError("margin cannot exceed amount (margin is amount minus cost; it may be negative)")
        return margin


def _positive_refund(amount: Decimal) -> Decimal:
    if amount <= 0:
        raise ValueError("a refund gives back a positive amount (a zero refund gives back nothing: do not send it)")
    return amount


class RefundIn(_Envelope):
    """Money given back for an order, full or partial (docs/VALUE.md, "Refunds")."""

    type: Literal["refund"]
    order_id: Text
    amount: Annotated[Money, AfterValidator(_positive_refund)]
    currency: Currency
    margin: Money | None = None
    lines: list[PurchaseLineIn] = Field(default_factory=list, max_length=500)
    reason: Text | None = None

    @field_validator("margin")
    @classmethod
    def _margin_within_amount(cls, margin: Decimal | None, info: ValidationInfo) -> Decimal | None:
        amount = info.data.get("amount")
        if margin is not None and amount is not None and margin > amount:
            raise ValueError("margin cannot exceed amount (the margin given back is part of the money given back)")
        return margin


class ServiceCaseIn(_Envelope):
    type: Literal["service_case"]
    case_id: Text
    status: Literal["opened", "updated", "resolved"]
    severity: Literal["low", "medium", "high", "critical"] = "medium"
    category: Text | None = None


class SurveyIn(_Envelope):
    type: Literal["survey"]
    survey_id: Text | None = None
    csat: Annotated[int, Field(ge=1, le=5)] | None = None
    nps: Annotated[int, Field(ge=0, le=10)] | None = None

    @model_validator(mode="after")
    def _has_a_score(self) -> SurveyIn:
        if self.csat is None and self.nps is None:
            raise ValueError("a survey answer needs csat or nps")
        return self


class ConsentIn(_Envelope):
    type: Literal["consent"]
    consent_channel: Literal["email", "sms", "phone", "mail", "push", "field"]
    purpose: Text
    status: Literal["granted", "withdrawn"]


TouchpointIn = Annotated[
    CallIn | EmailIn | VisitIn | WebFormIn | PurchaseIn | RefundIn | ServiceCaseIn | SurveyIn | ConsentIn,
    Field(discriminator="type"),
]
TOUCHPOINT_ADAPTER: TypeAdapter[Any] = TypeAdapter(TouchpointIn)


_MONEY_FIELDS = ("amount", "margin")
_MAP_FIELDS = ("attributes", "fields")


def to_canonical(model: BaseModel, received_at: datetime) -> dict[str, Any]:
    """The canonical dict (``projections.codec``) of a validated touchpoint.

    Built directly from the validated model (the hot path of ingest); a test holds it
    equal to the codec's own round trip ``to_dict(from_dict(...))``.
    """
    raw = model.model_dump(mode="json")
    own = {k: v for k, v in raw.items() if k not in _ENVELOPE_ORDER}
    for name in _MONEY_FIELDS:
        if own.get(name) is not None:
            own[name] = str(money(own[name]))
    for line in own.get("lines", ()):
        line["unit_price"] = str(money(line["unit_price"]))
    if "fields" in own:
        own["fields"] = dict(sorted(own["fields"].items()))
    return {
        "event_id": raw["event_id"],
        "type": raw["type"],
        "occurred_at": format_instant(model.occurred_at),  # type: ignore[attr-defined]
        "received_at": format_instant(received_at),
        "source": raw["source"],
        "customer": raw["customer"],
        "channel": raw["channel"],
        "trigger_id": raw["trigger_id"],
        "attributes": dict(sorted(raw["attributes"].items())),
        **{name: own[name] for name in _OWN_ORDER[raw["type"]]},
    }


_ENVELOPE_ORDER = ("event_id", "type", "occurred_at", "source", "customer", "channel", "trigger_id", "attributes")
_OWN_ORDER = {
    name: tuple(f.name for f in dataclasses.fields(cls) if f.name not in _ENVELOPE_ORDER and f.name != "received_at")
    for name, cls in TOUCHPOINT_TYPES.items()
}
