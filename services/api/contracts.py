"""The HTTP contract for touchpoints (pydantic): validation, normalisation, OpenAPI.

Mirrors ``schemas/touchpoint/*/v1.avsc`` field for field (a test holds them together).
What a sender posts is the canonical form (``projections.codec``) without
``received_at``, which the platform stamps. Emails are lower-cased and checked, phones
normalised to E.164 (``phonenumbers``, default region from settings). Unknown fields are
refused, so a typo never silently loses data.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from projections.codec import format_instant, from_dict, to_dict
from projections.touchpoints import Channel

__all__ = ["TouchpointIn", "TOUCHPOINT_ADAPTER", "to_canonical", "normalise_email", "normalise_phone", "set_phone_region"]

_region = {"default": "FR"}


def set_phone_region(region: str) -> None:
    _region["default"] = region


def normalise_email(value: str) -> str:
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


Text = Annotated[str, Field(min_length=1, max_length=200)]
Email = Annotated[str, Field(max_length=320), AfterValidator(normalise_email)]
Phone = Annotated[str, Field(max_length=40), AfterValidator(normalise_phone)]
Money = Annotated[Decimal, Field(max_digits=20, decimal_places=4)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExternalIdIn(_Strict):
    system: Text
    id: Text


class CustomerRefIn(_Strict):
    customer_id: Text | None = None
    emails: list[Email] = Field(default_factory=list, max_length=20)
    phones: list[Phone] = Field(default_factory=list, max_length=20)
    external_ids: list[ExternalIdIn] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _names_someone(self) -> CustomerRefIn:
        if not (self.customer_id or self.emails or self.phones or self.external_ids):
            raise ValueError("name the customer: customer_id, emails, phones or external_ids")
        return self


class _Envelope(_Strict):
    event_id: Annotated[str, Field(min_length=1, max_length=128)]
    occurred_at: AwareDatetime
    source: Text
    customer: CustomerRefIn
    channel: Channel
    trigger_id: Text | None = None
    attributes: dict[Text, Annotated[str, Field(max_length=1000)]] = Field(default_factory=dict, max_length=100)


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
    fields: dict[Text, Annotated[str, Field(max_length=5000)]] = Field(default_factory=dict, max_length=100)


class PurchaseLineIn(_Strict):
    sku: Text
    quantity: Annotated[int, Field(ge=1, le=1_000_000)]
    unit_price: Money
    category: Text | None = None


class PurchaseIn(_Envelope):
    type: Literal["purchase"]
    order_id: Text
    amount: Money
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    margin: Money | None = None
    lines: list[PurchaseLineIn] = Field(default_factory=list, max_length=500)


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
    CallIn | EmailIn | VisitIn | WebFormIn | PurchaseIn | ServiceCaseIn | SurveyIn | ConsentIn,
    Field(discriminator="type"),
]
TOUCHPOINT_ADAPTER: TypeAdapter[Any] = TypeAdapter(TouchpointIn)


def to_canonical(model: BaseModel, received_at: datetime) -> dict[str, Any]:
    """The canonical dict (``projections.codec``) of a validated touchpoint."""
    raw = model.model_dump(mode="json")
    raw["received_at"] = format_instant(received_at)
    return to_dict(from_dict(raw))
