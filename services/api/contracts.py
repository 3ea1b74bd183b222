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
import functools
import re
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import phonenumbers
from phonenumbers import PhoneMetadata
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE, region_code_for_country_code
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationInfo, field_validator,
                      model_validator)
from pydantic.json_schema import JsonDict, JsonValue

from projections.codec import format_instant, money
from projections.touchpoints import TOUCHPOINT_TYPES, Channel
from services.api.input_rules import (AMOUNT_PATTERN, POSITIVE_PATTERN, Currency, FreeText, Identifier, Instant, Money,
                                      SystemName, Text, check_text, money_at_least)

__all__ = ["TouchpointIn", "TOUCHPOINT_ADAPTER", "to_canonical", "normalise_email", "normalise_phone", "set_phone_region",
           "phone_pattern", "phone_schema", "EMAIL_PATTERN", "EMAIL_MAX"]

_region = {"default": "FR"}


def set_phone_region(region: str) -> None:
    _region["default"] = region


_BEYOND_ASCII = r"\u00a0-\ud7ff\uf900-\ufdcf\ufdf0-\uffef"  # internationalised addresses: no controls, surrogates
_ATOM = rf"[a-zA-Z0-9!#$%&'*+/=?^_`{{|}}~{_BEYOND_ASCII}-]+"
_LABEL = rf"[a-zA-Z0-9{_BEYOND_ASCII}](?:[a-zA-Z0-9{_BEYOND_ASCII}-]{{0,61}}[a-zA-Z0-9{_BEYOND_ASCII}])?"
EMAIL_PATTERN = rf"[ \t]*{_ATOM}(?:\.{_ATOM})*@(?:{_LABEL}\.)+[a-zA-Z{_BEYOND_ASCII}]{{2,63}}[ \t]*"
"""An address as the contract states it (blanks around it are trimmed): dot-atoms, an @, a
dotted domain of letters, digits and hyphens, letters beyond ASCII allowed (internationalised
addresses). Every string of this pattern (at most ``EMAIL_MAX`` characters) is accepted
and every other one refused, so the OpenAPI document says exactly what the server takes;
quoted local parts (``"a b"@example.com``) are outside it."""
EMAIL_MAX = 254
_EMAIL = re.compile(EMAIL_PATTERN)


def normalise_email(value: str) -> str:
    if len(value) > EMAIL_MAX or not _EMAIL.fullmatch(value):
        raise ValueError("not an email address: name@domain.tld, letters, digits and !#$%&'*+/=?^_`{|}~- "
                         "before the @ (single dots between), a dotted domain, at most 254 characters")
    return value.strip(" \t").lower()


_SEPARATOR = "[ .-]?"


def _digits(lengths: Iterable[int]) -> str:
    """``n`` digits for each n of ``lengths``, a space, dot or hyphen allowed before each."""
    runs: list[list[int]] = []
    for n in sorted(set(lengths)):
        if runs and runs[-1][1] == n - 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return "|".join(f"(?:{_SEPARATOR}[0-9]){{{a}}}" if a == b else f"(?:{_SEPARATOR}[0-9]){{{a},{b}}}"
                    for a, b in runs)


def _parsed(text: str, region: str) -> phonenumbers.PhoneNumber | None:
    """The number ``text`` names when it is a possible one, else None."""
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    return number if phonenumbers.is_possible_number(number) else None


def _possible(text: str, region: str) -> bool:
    return _parsed(text, region) is not None


@functools.cache
def phone_pattern(region: str) -> str:
    """The phone numbers the contract takes, as one regular expression built from the
    ``phonenumbers`` metadata: ``+``, a country calling code and a number of a length that
    country has; or a national number of ``region`` (its national prefix optional). Digits
    may be separated by single spaces, dots or hyphens. Every string of this pattern is a
    possible number (tests/unit/test_input_rules.py samples it per region)."""
    countries = []
    for code in sorted(COUNTRY_CODE_TO_REGION_CODE):
        metadata = PhoneMetadata.metadata_for_region_or_calling_code(code, region_code_for_country_code(code))
        if metadata is not None and metadata.general_desc is not None:
            countries.append(f"{code}(?:{_digits(n for n in metadata.general_desc.possible_length if n > 0)})")
    home = PhoneMetadata.metadata_for_region(region)
    if home is None or home.general_desc is None:
        raise ValueError(f"no phone numbering plan for region {region!r}")
    lengths = [n for n in home.general_desc.possible_length if n > 0]
    prefix = home.national_prefix or ""
    first = "".join(d for d in ("123456789" if prefix else "0123456789")
                    if all(_possible(d + "5" * (n - 1), region) and (not prefix or _possible(prefix + d + "5" * (n - 1), region))
                           for n in lengths))
    national = f"[{first.lstrip('0')}](?:{_digits(n - 1 for n in lengths)})"
    if first.startswith("0"):  # a number may begin with 0 (no national prefix), never with 00 (dialling abroad)
        national = f"(?:{national}|0{_SEPARATOR}[1-9](?:{_digits(n - 2 for n in lengths)}))"
    if prefix:
        national = f"(?:{prefix}{_SEPARATOR})?{national}"
    return rf"(?:\+(?:{'|'.join(countries)})|{national})"


@functools.cache
def _phone_grammar(region: str) -> re.Pattern[str]:
    return re.compile(phone_pattern(region))


def normalise_phone(value: str) -> str:
    region = _region["default"]
    number = _parsed(value, region) if _phone_grammar(region).fullmatch(value) else None  # parsed once
    if number is None:
        raise ValueError(f"not a phone number: + and the country code then the number (+33612345678), or a "
                         f"national number of {region}; digits, with single spaces, dots or hyphens between")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _email_schema(schema: dict[str, Any]) -> None:
    schema.update(pattern=f"^{EMAIL_PATTERN}$", maxLength=EMAIL_MAX)


def phone_schema(schema: dict[str, Any]) -> None:
    """The phone rule in JSON Schema words (pattern of the default region, length): for a
    body's field and the lookup's query parameter alike."""
    schema.update(pattern=f"^{phone_pattern(_region['default'])}$", maxLength=40)


Email = Annotated[str, Field(json_schema_extra=_email_schema), AfterValidator(normalise_email)]
Phone = Annotated[str, Field(max_length=40, json_schema_extra=phone_schema), AfterValidator(normalise_phone)]


def whole_number(value: Any) -> Any:
    """A JSON integer as JSON Schema has it: ``12`` or ``12.0``, never ``true`` (Python's
    bool is an int) nor ``"12"`` (a string); the bounds are the field's."""
    if isinstance(value, bool) or isinstance(value, str):
        raise ValueError("a whole number, such as 12")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


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
    duration_seconds: Annotated[int, Field(ge=0, le=86_400), BeforeValidator(whole_number)] = 0
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
    duration_minutes: Annotated[int, Field(ge=0, le=1440), BeforeValidator(whole_number)] | None = None


class WebFormIn(_Envelope):
    type: Literal["web_form"]
    form_id: Text
    fields: dict[Text, Annotated[FreeText, Field(max_length=5000)]] = Field(default_factory=dict, max_length=100)


_MARGIN = ("amount minus cost, in the same currency: may be negative (a sale below cost), never more than "
           "amount (a rule between two fields a JSON Schema cannot state: 422 on margin)")


def _no_negative_price(price: Decimal) -> Decimal:
    if price.is_signed():  # -0 too: the contract's pattern has no sign
        raise ValueError("a unit price is never negative (a discount lowers the price, a refund is its own event)")
    return price


def _no_negative_purchase(amount: Decimal) -> Decimal:
    # Zero is accepted: a free order (voucher, sample) is an order; it counts as a purchase
    # and adds nothing to revenue.
    if amount.is_signed():  # -0 too: the contract's pattern has no sign
        raise ValueError("a purchase amount is never negative: money given back is a refund, "
                         "sent as its own event (\"type\": \"refund\" with the order_id it refunds), "
                         "not a negative purchase")
    return amount


def _within_amount(why: str) -> Any:
    """The validator of ``margin`` ≤ ``amount`` (a rule between two fields: declared after
    ``amount``, it sees it), with the reason for the sentence of its 422."""

    def check(cls: type, margin: Decimal | None, info: ValidationInfo) -> Decimal | None:
        amount = info.data.get("amount")
        if margin is not None and amount is not None and margin > amount:
            raise ValueError(f"margin cannot exceed amount ({why})")
        return margin

    return field_validator("margin")(classmethod(check))


class PurchaseLineIn(_Strict):
    sku: Text
    quantity: Annotated[int, Field(ge=1, le=1_000_000), BeforeValidator(whole_number)]
    unit_price: money_at_least(_no_negative_price, AMOUNT_PATTERN)  # type: ignore[valid-type]
    category: Text | None = None


class PurchaseIn(_Envelope):
    type: Literal["purchase"]
    order_id: Text
    amount: money_at_least(_no_negative_purchase, AMOUNT_PATTERN)  # type: ignore[valid-type]
    currency: Currency
    margin: Annotated[Money | None, Field(description=_MARGIN)] = None
    lines: list[PurchaseLineIn] = Field(default_factory=list, max_length=500)

    _margin_within_amount = _within_amount("margin is amount minus cost; it may be negative")


def _positive_refund(amount: Decimal) -> Decimal:
    if amount <= 0:
        raise ValueError("a refund gives back a positive amount (a zero refund gives back nothing: do not send it)")
    return amount


class RefundIn(_Envelope):
    """Money given back for an order, full or partial (docs/VALUE.md, "Refunds")."""

    type: Literal["refund"]
    order_id: Text
    amount: money_at_least(_positive_refund, POSITIVE_PATTERN)  # type: ignore[valid-type]
    currency: Currency
    margin: Annotated[Money | None, Field(description=_MARGIN)] = None
    lines: list[PurchaseLineIn] = Field(default_factory=list, max_length=500)
    reason: Text | None = None

    _margin_within_amount = _within_amount("the margin given back is part of the money given back")


class ServiceCaseIn(_Envelope):
    type: Literal["service_case"]
    case_id: Text
    status: Literal["opened", "updated", "resolved"]
    severity: Literal["low", "medium", "high", "critical"] = "medium"
    category: Text | None = None


class SurveyIn(_Envelope):
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra={"anyOf": [
        {"required": [score], "properties": {score: {"type": "integer"}}} for score in ("csat", "nps")]})

    type: Literal["survey"]
    survey_id: Text | None = None
    csat: Annotated[int, Field(ge=1, le=5), BeforeValidator(whole_number)] | None = None
    nps: Annotated[int, Field(ge=0, le=10), BeforeValidator(whole_number)] | None = None

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
