"""The input rules at the contract: each bad value refused on its field path with the rule's
sentence, each good one kept (README, "Input rules"; services/api/input_rules.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import HTTPException
from pydantic import TypeAdapter, ValidationError

from services.api.body import parse_json
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projections.codec import format_instant
from projections.touchpoints import TOUCHPOINT_TYPES
from projections.view.state import instant_of
from services.api.contracts import EMAIL_PATTERN, normalise_email, normalise_phone, phone_pattern, set_phone_region
from services.api.input_rules import CURRENCIES, Identifier, Instant, Position
from services.embedded.platform import CURSORS as EMBEDDED_CURSORS
from services.ports import timeline_point
from services.scaleout.platform import cursors as scale_out_cursors
from services.scaleout.redis.feeds import FeedCursor
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


@pytest.mark.parametrize("kind", sorted(TOUCHPOINT_TYPES))
def test_a_rejected_field_is_named_by_its_path_in_the_event_whatever_the_type(kind: str) -> None:
    verdict = judge({**purchase(), "type": kind, "source": ""}, "events[3]", 32_000, NOW)
    paths = [e["path"] for e in verdict["errors"]]
    assert "events[3].source" in paths and not any(p.startswith(f"events[3].{kind}.") for p in paths), paths


SAMPLED = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                   suppress_health_check=list(HealthCheck))


@SAMPLED
@given(st.data())
def test_every_cursor_of_a_runtime_s_pattern_names_a_point_its_storage_can_seek(data: st.DataObject) -> None:
    """What a client's tools generate from the OpenAPI document is what the server takes."""
    feed = data.draw(st.from_regex(re.compile(EMBEDDED_CURSORS.feed), fullmatch=True))
    assert 0 <= int(feed) < 2**63  # a SQLite integer
    at, position = timeline_point(data.draw(st.from_regex(re.compile(EMBEDDED_CURSORS.timeline), fullmatch=True)))
    assert format_instant(instant_of(at)) and 0 <= int(position) < 2**63  # a date, and a log position
    partitions = data.draw(st.integers(1, 16))
    scale_out = scale_out_cursors(partitions)
    stream = data.draw(st.from_regex(re.compile(scale_out.feed), fullmatch=True))
    parsed = FeedCursor.parse(stream, partitions)  # one Redis stream id per partition
    assert str(parsed) == ".".join(f"{int(ms)}-{int(seq)}" for ms, seq in (p.split("-") for p in stream.split(".")))
    assert all(0 <= ms < 2**64 and 0 <= seq < 2**64 for ms, seq in parsed.ids)
    with pytest.raises(ValueError):  # a cursor of another partition count is not this feed's
        FeedCursor.parse(stream + ".0-0", partitions)
    at, event_id = timeline_point(data.draw(st.from_regex(re.compile(scale_out.timeline), fullmatch=True)))
    assert instant_of(at) and TypeAdapter(Identifier).validate_python(event_id) == event_id


@pytest.mark.parametrize("region", ["FR", "US", "GB", "DE", "IT", "JP"])
def test_every_phone_of_the_contract_s_pattern_is_accepted_and_stored_in_e164(region: str) -> None:
    grammar = re.compile(phone_pattern(region))
    set_phone_region(region)
    try:
        @SAMPLED
        @given(st.from_regex(grammar, fullmatch=True).filter(lambda s: len(s) <= 40))
        def accepted(phone: str) -> None:
            assert re.fullmatch(r"\+[1-9][0-9]{4,18}", normalise_phone(phone))  # plans allow up to 17 digits

        accepted()
    finally:
        set_phone_region("FR")


def test_a_phone_outside_the_pattern_is_refused_with_the_rule() -> None:
    assert normalise_phone("06 12 34 56 78") == normalise_phone("+33.6.12.34.56.78") == "+33612345678"
    for bad in ("12", "(06) 12 34 56 78", "06  12 34 56 78", "+33 6 12 34 56 7", "0033612345678", "phone"):
        with pytest.raises(ValueError, match="not a phone number"):
            normalise_phone(bad)


@SAMPLED
@given(st.from_regex(re.compile(EMAIL_PATTERN), fullmatch=True).filter(lambda s: len(s) <= 254))
def test_every_email_of_the_contract_s_pattern_is_accepted_in_lower_case(address: str) -> None:
    kept = normalise_email(address)
    assert kept == address.strip(" \t").lower() and "@" in kept


def test_an_email_outside_the_pattern_is_refused_with_the_rule() -> None:
    assert normalise_email(" Ana.Martin@Example.COM ") == "ana.martin@example.com"
    assert normalise_email("José@Exämple.FR") == "josé@exämple.fr"  # internationalised
    for bad in ("", "ana", "ana@", "ana..martin@example.com", "ana@example", '"a b"@example.com',
                "ana\u0000@example.com", "a@-example.com", "a" * 250 + "@example.com"):
        with pytest.raises(ValueError, match="not an email address"):
            normalise_email(bad)


def test_identifiers_and_instants_document_their_pattern_for_clients() -> None:
    assert TypeAdapter(Identifier).json_schema()["pattern"] == "^[A-Za-z0-9][A-Za-z0-9._~:@-]*$"
    assert TypeAdapter(Instant).json_schema()["format"] == "date-time"
