"""The input rules at the contract: each bad value refused on its field path with the rule's
sentence, each good one kept (README, "Input rules"; services/api/input_rules.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import HTTPException
from pydantic import TypeAdapter, ValidationError

from services.api.body import parse_json
from services.api.input_rules import CURRENCIES, Cursor, Identifier, Instant, Position
from services.api.intake import judge

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def purchase(**changes: Any) -> dict[str, Any]:
    return {"event_id": "e-1", "type": "purchase", "occurred_at": "2026-11-24T11:00:00Z", "source": "web-shop",
            "customer": {"customer_id": "c-1"}, "channel": "web", "order_id": "o-1", "amount": "10.00",
            "currency": "EUR", **changes}


def refused(event: dict[str, Any]) -> dict[str, str]:
    verdict = judge(event, "events[3]", 32_000, NOW)
    assert verdict["result"] == "rejected", verdict
    [error] = verdict["errors"]
    return error


def kept(event: dict[str, Any]) -> dict[str, Any]:
    verdict = judge(event, "", 32_000, NOW)
    assert "document" in verdict, verdict
    document: dict[str, Any] = verdict["document"]
    return document


# -- instants ---------------------------------------------------------------------------
@pytest.mark.parametrize("instant", ["20261201", "2026-12-01", "2026-12-01T10:00:00", "2026-12-01 10:00:00Z",
                                     "2026-12-01T10:00Z", "1796000000", 1796000000, 0, 0.5, None, "yesterday"])
def test_an_instant_that_is_not_rfc_3339_with_an_offset_is_refused(instant: Any) -> None:
    error = refused(purchase(occurred_at=instant))
    assert error["path"] == "events[3].occurred_at"
    assert "RFC 3339" in error["message"] or "valid" in error["message"], error


@pytest.mark.parametrize("instant", ["2026-11-24T11:00:00Z", "2026-11-24t11:00:00z", "2026-11-24T12:00:00+01:00",
                                     "2026-11-24T11:00:00.123456789-00:00"])
def test_an_rfc_3339_instant_with_an_offset_is_kept_in_utc(instant: str) -> None:
    assert kept(purchase(occurred_at=instant))["occurred_at"].startswith("2026-11-24T11:00:00")


def test_an_instant_outside_the_years_1900_to_2999_is_refused() -> None:
    adapter = TypeAdapter(Instant)
    for bad in ("0001-01-04T00:00:00Z", "1899-12-31T23:00:00Z", "9999-12-31T23:59:59-23:59"):
        with pytest.raises(ValidationError, match="between the years 1900 and 2999"):
            adapter.validate_python(bad)


# -- money and currency -----------------------------------------------------------------
def test_a_negative_purchase_amount_is_refused_pointing_to_refunds() -> None:
    error = refused(purchase(amount="-50.00"))
    assert error["path"] == "events[3].amount"
    assert "refund" in error["message"]


@pytest.mark.parametrize("amount", [-5, 10, 10.5, "1e3", "+10", " 10", "10.", ".5", "10.00001", "1000000000000",
                                    "NaN", "Infinity", "0x10", "1,5"])
def test_money_that_is_not_a_decimal_string_within_range_and_scale_is_refused(amount: Any) -> None:
    error = refused(purchase(amount=amount))
    assert error["path"] == "events[3].amount"
    assert "decimal string" in error["message"]


def test_a_zero_amount_is_a_free_order_and_is_kept_as_a_purchase() -> None:
    assert kept(purchase(amount="0"))["amount"] == "0.0000"
    assert kept(purchase(amount="0.00", lines=[{"sku": "sample", "quantity": 1, "unit_price": "0"}]))


def test_the_largest_amount_at_the_finest_scale_is_kept_exactly() -> None:
    assert kept(purchase(amount="999999999999.9999"))["amount"] == "999999999999.9999"


def test_a_margin_may_be_negative_but_never_above_the_amount() -> None:
    assert kept(purchase(margin="-3.50"))["margin"] == "-3.5000"
    error = refused(purchase(margin="10.01"))
    assert (error["path"], "exceed" in error["message"]) == ("events[3].margin", True)


def test_a_negative_unit_price_is_refused_on_its_line() -> None:
    error = refused(purchase(lines=[{"sku": "a", "quantity": 1, "unit_price": "2"},
                                    {"sku": "b", "quantity": 1, "unit_price": "-1"}]))
    assert error["path"] == "events[3].lines[1].unit_price"


@pytest.mark.parametrize("currency", ["ZZZ", "eur", "EURO", "XXX", "XTS", "", 978])
def test_a_currency_outside_the_current_iso_4217_list_is_refused(currency: Any) -> None:
    assert refused(purchase(currency=currency))["path"] == "events[3].currency"


def test_current_iso_4217_codes_come_from_the_maintained_list() -> None:
    assert {"EUR", "USD", "JPY", "CHF", "XOF"} <= CURRENCIES
    assert kept(purchase(currency="JPY"))["currency"] == "JPY"


# -- identifiers ------------------------------------------------------------------------
@pytest.mark.parametrize("identifier", ["../../x/etc/passwd", "a/b", ".", "..", ".hidden", "-x", "a b", "a%2Fb",
                                        "a?b", "a#b", "é", "", "x" * 129, "a\u0000b"])
def test_an_identifier_that_is_not_one_url_path_segment_is_refused(identifier: str) -> None:
    assert refused(purchase(customer={"customer_id": identifier}))["path"] == "events[3].customer.customer_id"
    assert refused(purchase(event_id=identifier))["path"] == "events[3].event_id"
    ref = {"external_ids": [{"system": "loyalty", "id": identifier}]}
    assert refused(purchase(customer=ref))["path"] == "events[3].customer.external_ids[0].id"


@pytest.mark.parametrize("identifier", ["c-1", "cus_0a1b2c", "CRM:00042", "ana@example.com", "v1.2~x",
                                        "x" * 128, "form:contact:3f2a"])
def test_an_identifier_of_the_documented_characters_is_kept(identifier: str) -> None:
    assert kept(purchase(customer={"customer_id": identifier}, event_id=identifier))["event_id"] == identifier


def test_an_external_id_system_may_not_hold_the_colon_that_separates_it_from_the_id() -> None:
    ref = {"external_ids": [{"system": "crm:eu", "id": "42"}]}
    assert refused(purchase(customer=ref))["path"] == "events[3].customer.external_ids[0].system"


# -- text -------------------------------------------------------------------------------
@pytest.mark.parametrize("control", ["\u0000", "\u0007", "\n", "\r", "\t", "\u001b", "\u007f", "\u0085", "\u009b"])
def test_a_control_character_in_a_text_field_is_refused_with_its_code_point(control: str) -> None:
    error = refused(purchase(source=f"a{control}b"))
    assert error["path"] == "events[3].source"
    assert f"U+{ord(control):04X}" in error["message"]


def test_a_control_character_in_an_attribute_name_is_refused() -> None:
    assert refused(purchase(attributes={"no\u0000te": "x"}))["path"].startswith("events[3].attributes")


def test_free_text_keeps_line_breaks_and_tabs_and_drops_other_controls() -> None:
    document = kept(purchase(attributes={"note": "line one\r\nline two\rthree\tcol\u0000\u0007\u009bend"}))
    assert document["attributes"] == {"note": "line one\nline two\nthree\tcolend"}


def test_a_web_form_field_is_free_text() -> None:
    form = {**purchase(), "type": "web_form", "form_id": "contact", "fields": {"message": "hi\r\nthere\u0000"}}
    for name in ("order_id", "amount", "currency"):
        del form[name]
    assert kept(form)["fields"] == {"message": "hi\nthere"}


def test_a_lone_surrogate_is_refused_as_not_unicode() -> None:
    assert "surrogate" in refused(purchase(source="a\ud800b"))["message"]


# -- the JSON body ----------------------------------------------------------------------
@pytest.mark.parametrize(("body", "rule"), [
    (b'{"amount": "10.00", "amount": "-999"}', "duplicate key 'amount'"),
    (b'[{"customer": {"customer_id": "a", "customer_id": "b"}}]', "duplicate key 'customer_id'"),
    (b'{"amount": NaN}', "NaN is not JSON"),
    (b'{"amount": Infinity}', "Infinity is not JSON"),
    (b'{"source": "caf\xe9"}', "not UTF-8"),
    (b"[" * 100_000, "nested too deeply"),
    (b'{"a": 1', "malformed JSON"),
])
def test_a_body_that_is_not_strict_json_is_refused_with_400_naming_the_rule(body: bytes, rule: str) -> None:
    with pytest.raises(HTTPException) as refusal:
        parse_json(body)
    assert refusal.value.status_code == 400
    assert rule in refusal.value.detail


def test_strict_json_keeps_the_same_key_in_different_objects() -> None:
    assert parse_json(b'[{"a": 1}, {"a": 2, "b": {"a": 3}}]') == [{"a": 1}, {"a": 2, "b": {"a": 3}}]


# -- query parameters -------------------------------------------------------------------
def test_a_position_beyond_what_storage_holds_is_refused() -> None:
    adapter = TypeAdapter(Position)
    assert adapter.validate_python(2**63 - 1) == 2**63 - 1
    for bad in (2**63, 10_000_000_000_000_000_000, -1):
        with pytest.raises(ValidationError):
            adapter.validate_python(bad)


def test_a_cursor_is_short_text() -> None:
    adapter = TypeAdapter(Cursor)
    assert adapter.validate_python("bm90LWEtY3Vyc29y") == "bm90LWEtY3Vyc29y"
    for bad in ("", "x" * 513, "a\u0000b"):
        with pytest.raises(ValidationError):
            adapter.validate_python(bad)


def test_identifiers_and_instants_document_their_pattern_for_clients() -> None:
    assert TypeAdapter(Identifier).json_schema()["pattern"] == "^[A-Za-z0-9][A-Za-z0-9._~:@-]*$"
    assert TypeAdapter(Instant).json_schema()["format"] == "date-time"
