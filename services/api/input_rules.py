"""The input rules every route applies, one type per rule (pydantic), shared by both runtimes.

A value that breaks a rule is refused with the field path and the rule's sentence; nothing
is guessed or repaired except free text, whose line breaks and invisible controls are
normalised. The rules (README, "Input rules"):

* ``Instant``: an RFC 3339 string with an explicit offset (``Z`` or ``±hh:mm``), years
  1900 to 2999; fractions beyond the microsecond are truncated. Numbers, dates without a
  time and times without an offset are refused.
* ``Identifier``: 1 to 128 characters from ``A-Z a-z 0-9 . _ ~ : @ -``, starting with a
  letter or digit, so every accepted id is one URL path segment as it is (no ``/``, never
  ``.`` or ``..``). ``SystemName`` (an external id's system, up to 64) has no ``:``,
  which separates system and id in ``external_id=system:id``.
* ``Text``: 1 to 200 characters without control characters (C0, DEL, C1) or lone
  surrogates. ``FreeText`` (attribute values, web form field values) may hold line breaks
  and tabs: CRLF and CR become LF, other controls are removed.
* ``Money``: a decimal string (never a JSON number, which loses cents), at most 12 integer
  digits and 4 decimals, no exponent, sign only ``-``.
* ``Currency``: a current ISO 4217 code from ``pycountry`` (the Debian iso-codes list),
  except ``XXX`` (no currency) and ``XTS`` (reserved for tests).
* ``Position``: a log position or numeric cursor, 0 to 2^63 − 1 (what storage can hold);
  ``cursor(pattern, meaning)``: a cursor parameter of the runtime's grammar
  (``services.ports.Cursors``), its pattern in the contract.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from collections.abc import Callable
from typing import Annotated, Any

import pycountry
from fastapi import Header, Query
from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field, WithJsonSchema

from projections.predicates.facts import CONTACT_CHANNELS

__all__ = ["Instant", "INSTANT_PATTERN", "Identifier", "SystemName", "Text", "FreeText", "Money", "Currency", "Position",
           "cursor", "ContactChannel", "WindowStart", "WindowEnd", "CURRENCIES", "MAX_POSITION", "check_text"]

MAX_POSITION = 2**63 - 1
_RFC3339 = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})")
_YEAR, _LEAP = r"(?:19|2[0-9])[0-9][0-9]", r"(?:(?:19|2[0-9])(?:0[48]|[2468][048]|[13579][26])|2000|2400|2800)"
_DATE = (rf"(?:{_YEAR}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
         rf"|02-(?:0[1-9]|1[0-9]|2[0-8]))|{_LEAP}-02-29)")
INSTANT_PATTERN = rf"{_DATE}[Tt](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{{1,9}})?(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
"""Every RFC 3339 instant with an offset of the years 1900 to 2999, and nothing else: real
calendar dates (leap days of leap years only), no leap second. What clients are told, and
what the server takes (``_rfc3339``): a tool generating from the pattern sends only
instants the server accepts."""
_INSTANT = re.compile(INSTANT_PATTERN)
_INSTANT_PATTERN = f"^{INSTANT_PATTERN}$"
_NO_CONTROL = r"^[^\u0000-\u001f\u007f-\u009f]*$"  # JSON Schema (ECMA 262) form of check_text
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_FREE_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # all but tab and line feed
_MONEY = re.compile(r"-?(0|[1-9][0-9]{0,11})(\.[0-9]{1,4})?")
CURRENCIES = frozenset(c.alpha_3 for c in pycountry.currencies) - {"XXX", "XTS"}


def _rfc3339(value: Any) -> Any:
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError("an instant is an RFC 3339 string with an offset, e.g. 2026-12-01T09:30:00Z "
                         "or 2026-12-01T10:30:00+01:00")
    if not _INSTANT.fullmatch(value):
        raise ValueError("an instant must be a real date and time between the years 1900 and 2999")
    return value


def _plausible(moment: datetime) -> datetime:
    """Keep instants where every runtime can represent them (UTC conversion included)."""
    if not 1900 <= moment.year <= 2999:
        raise ValueError("an instant must be between the years 1900 and 2999")
    return moment


def check_text(value: str) -> str:
    found = _CONTROL.search(value)
    if found:
        raise ValueError(f"control character U+{ord(found.group()):04X} at offset {found.start()} "
                         "(only free-text fields may hold line breaks and tabs)")
    return value


def _free_text(value: str) -> str:
    surrogate = re.search(r"[\ud800-\udfff]", value)
    if surrogate:
        raise ValueError(f"lone surrogate at offset {surrogate.start()}: not Unicode text")
    return _FREE_CONTROL.sub("", value.replace("\r\n", "\n").replace("\r", "\n"))


def _identifier(pattern: re.Pattern[str], limit: int, extra: str) -> Any:
    def check(value: str) -> str:
        if not (len(value) <= limit and pattern.fullmatch(value)):
            raise ValueError(f"an identifier is 1 to {limit} characters from A-Z a-z 0-9 . _ ~ @ -{extra}, "
                             "starting with a letter or digit (one URL path segment)")
        return value

    return Annotated[str, AfterValidator(check),
                     WithJsonSchema({"type": "string", "minLength": 1, "maxLength": limit,
                                     "pattern": f"^{pattern.pattern}$"})]


def _money(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError('money is a decimal string such as "49.90", never a JSON number')
    if not _MONEY.fullmatch(value):
        raise ValueError("money is a decimal string with at most 12 integer digits and 4 decimals, "
                         'such as "49.90" (no exponent, no "+", no spaces)')
    return value


def _currency(value: str) -> str:
    if value not in CURRENCIES:
        raise ValueError(f"{value!r} is not a current ISO 4217 currency code (upper case, e.g. EUR)")
    return value


Instant = Annotated[AwareDatetime, BeforeValidator(_rfc3339), AfterValidator(_plausible),
                    WithJsonSchema({"type": "string", "format": "date-time", "pattern": _INSTANT_PATTERN})]
Identifier = _identifier(re.compile(r"[A-Za-z0-9][A-Za-z0-9._~:@-]*"), 128, " :")
SystemName = _identifier(re.compile(r"[A-Za-z0-9][A-Za-z0-9._~@-]*"), 64, "")
Text = Annotated[str, Field(min_length=1, max_length=200, json_schema_extra={"pattern": _NO_CONTROL}),
                 AfterValidator(check_text)]
FreeText = Annotated[str, AfterValidator(_free_text)]
Money = Annotated[Decimal, BeforeValidator(_money),
                  WithJsonSchema({"type": "string", "pattern": f"^{_MONEY.pattern}$", "examples": ["49.90"]})]
AMOUNT_PATTERN = r"(0|[1-9][0-9]{0,11})(\.[0-9]{1,4})?"
"""Money never negative (an order's amount, a unit price): the pattern the contract states."""
POSITIVE_PATTERN = r"([1-9][0-9]{0,11}(\.[0-9]{1,4})?|0\.([1-9][0-9]{0,3}|0[1-9][0-9]{0,2}|00[1-9][0-9]?|000[1-9]))"
"""Money above zero (a refund): the pattern the contract states."""


def money_at_least(rule: Callable[[Decimal], Decimal], pattern: str) -> Any:
    """Money with a lower bound: ``rule`` refuses what is under it with its own sentence,
    ``pattern`` states the same bound in the contract."""
    return Annotated[Decimal, BeforeValidator(_money), AfterValidator(rule),
                     WithJsonSchema({"type": "string", "pattern": f"^{pattern}$", "examples": ["49.90"]})]
Currency = Annotated[str, AfterValidator(_currency), WithJsonSchema({"type": "string", "enum": sorted(CURRENCIES)})]
Position = Annotated[int, Field(ge=0, le=MAX_POSITION)]


def cursor(pattern: str, meaning: str, **options: Any) -> Any:
    """A cursor parameter of the runtime's grammar (``services.ports.Cursors``), as the
    parameter's default: the pattern is in the contract, and every string of it is
    accepted (past the end: an empty page). ``options``: ``alias`` and the like."""
    where = Header if options.pop("header", False) else Query
    return where(None, pattern=f"^{pattern}$", max_length=160,
                 description=f"{meaning}: pass back the next_cursor of the page before", **options)
ContactChannel = Annotated[str | None, Query(json_schema_extra={"enum": list(CONTACT_CHANNELS)},
                                             description="a contact channel (422 names the ones there are)")]
WindowStart = Annotated[Instant | None, Query(alias="from", description="window start, included (default: 30 days "
                                                                      "before to); a window whose from is not "
                                                                      "before its to is empty")]
WindowEnd = Annotated[Instant | None, Query(alias="to", description="window end, excluded (default: now)")]
