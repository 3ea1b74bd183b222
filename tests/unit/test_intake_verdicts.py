"""Per-event verdicts for input that must be refused with a path, never a 500."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from services.api.input_rules import INSTANT_PATTERN, Instant
from services.api.intake import judge

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def call(**changes: Any) -> dict[str, Any]:
    return {"event_id": "e-1", "type": "call", "occurred_at": "2026-11-24T11:00:00Z", "source": "cc",
            "customer": {"customer_id": "c-1"}, "channel": "phone", "direction": "inbound",
            "outcome": "reached", **changes}


def test_a_valid_event_is_accepted_with_its_canonical_form() -> None:
    verdict = judge(call(), "", 32_000, NOW)
    assert verdict["document"]["occurred_at"] == "2026-11-24T11:00:00.000000+00:00"


def test_an_event_nested_deeper_than_any_touchpoint_is_rejected_not_a_crash() -> None:
    deep: dict[str, Any] = {"leaf": 1}
    for _ in range(400):
        deep = {"x": deep}
    verdict = judge(call(attributes=deep), "events[4]", 32_000, NOW)
    assert (verdict["result"], verdict["errors"][0]["path"]) == ("rejected", "events[4]")


def test_an_implausible_year_is_rejected_on_the_field() -> None:
    verdict = judge(call(occurred_at="0001-01-01T00:30:00+05:00"), "", 32_000, NOW)
    assert verdict["errors"][0]["path"] == "occurred_at"


@pytest.mark.parametrize("moment", ["2025-02-29T10:00:00Z", "1900-02-29T10:00:00Z", "2026-04-31T10:00:00Z",
                                    "2026-04-01T24:00:00Z", "2026-04-01T10:00:60Z", "2026-04-01T10:00:00+24:00"])
def test_a_date_or_time_the_calendar_has_not_is_refused_as_the_pattern_says(moment: str) -> None:
    verdict = judge(call(occurred_at=moment), "", 32_000, NOW)
    assert [e["path"] for e in verdict["errors"]] == ["occurred_at"], verdict
    assert re.fullmatch(INSTANT_PATTERN, moment) is None


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.from_regex(re.compile(INSTANT_PATTERN), fullmatch=True))
def test_every_instant_of_the_pattern_is_a_real_one_the_server_reads(moment: str) -> None:
    TypeAdapter(Instant).validate_python(moment)


def test_an_event_from_the_future_is_rejected_beyond_the_tolerance_only() -> None:
    soon = (NOW + timedelta(minutes=10)).isoformat()
    later = (NOW + timedelta(hours=2)).isoformat()
    assert "document" in judge(call(occurred_at=soon), "", 32_000, NOW)
    verdict = judge(call(occurred_at=later), "events[0]", 32_000, NOW)
    assert verdict["reason"] == "in_the_future"  # well-formed: a conflict with the clock (409 when all are)
    assert verdict["errors"] == [{"path": "events[0].occurred_at",
                                  "message": "occurred_at is more than 900 s ahead of the platform's clock"}]
    assert "document" in judge(call(occurred_at=later), "", 32_000, NOW, timedelta(days=1))


def test_an_unknown_type_names_the_type_field() -> None:
    verdict = judge(call(type="carrier_pigeon"), "events[2]", 32_000, NOW)
    assert (verdict["reason"], verdict["errors"][0]["path"]) == ("unknown_type", "events[2].type")


@pytest.mark.parametrize(("value", "kept"), [(190, 190), (190.0, 190)])
def test_a_whole_number_is_an_integer_as_json_schema_says(value: Any, kept: int) -> None:
    assert judge(call(duration_seconds=value), "", 32_000, NOW)["document"]["duration_seconds"] == kept


@pytest.mark.parametrize("value", [True, "190", 190.5, 10**20])
def test_a_boolean_a_string_a_fraction_or_a_huge_number_is_no_duration(value: Any) -> None:
    verdict = judge(call(duration_seconds=value), "", 32_000, NOW)
    assert verdict["result"] == "rejected" and verdict["errors"][0]["path"] in ("duration_seconds", ""), verdict
    assert "nested" not in verdict["errors"][0]["message"], verdict


def test_the_contract_states_every_bound_in_json_schema_words() -> None:
    """pydantic writes a bound it could not attach as its own "ge"/"le" keys, which mean
    nothing to a JSON Schema tool: every bound must be minimum/maximum."""
    from services.api.openapi import _touchpoint_schemas

    def raw(node: Any) -> list[str]:
        if isinstance(node, dict):
            return [k for k in node if k in ("ge", "le", "gt", "lt")] + [k for v in node.values() for k in raw(v)]
        return [k for v in node for k in raw(v)] if isinstance(node, list) else []

    assert raw(_touchpoint_schemas()) == []
