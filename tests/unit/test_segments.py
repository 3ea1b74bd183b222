"""Segment definitions: compiled with precise errors, refusing facts that would go
stale, and entries and exits as the difference of a customer's view before and after."""

from __future__ import annotations

import subprocess
import sys
from functools import reduce
from pathlib import Path

import pytest

from projections.predicates.errors import RuleErrors
from projections.segments.membership import ENTERED, EXITED, changes, compile_segments, members_of
from projections.view.fold import evolve, initial_view
from services.segments.file import load_segments, read_segments
from services.settings import SEGMENTS_FILE
from tests.support import touchpoints as tp

ROOT = Path(__file__).resolve().parents[2]


def one(where: object, sid: str = "s") -> str:
    """The error message of a one-segment file, or '' when it compiles."""
    try:
        compile_segments({"segments": [{"id": sid, "version": 1, "where": where}]}, "f.yaml")
    except RuleErrors as errors:
        return str(errors.errors[0])
    return ""


def test_the_default_segments_compile() -> None:
    ids = [s.id for s in load_segments(SEGMENTS_FILE).segments]
    assert ids == ["high_value", "complaint_open", "declining_repeat_buyers", "lost_repeat_buyers",
                   "email_marketing_opt_in", "one_time_buyers"]


def test_a_fact_relative_to_now_is_refused_with_what_to_use_instead() -> None:
    message = one({"fact": "days_since_last_purchase", "gt": 90})
    assert message.startswith("f.yaml: segment s (v1): where.fact: 'days_since_last_purchase' depends on the "
                              "current time")
    assert "use lifecycle.stage" in message
    assert "depends on the current time" in one({"all": [{"fact": "purchases.count", "gte": 1},
                                                        {"not": {"fact": "contacts_30d", "gt": 3}}]})


def test_a_value_card_fact_is_refused_because_it_moves_with_the_portfolio() -> None:
    assert "computed against the whole portfolio" in one({"fact": "value.rfm.segment", "eq": "champions"})


def test_timeless_derived_facts_and_document_facts_are_accepted() -> None:
    assert one({"all": [{"fact": "open_complaints", "gt": 0}, {"fact": "preferred_channel", "eq": "email"},
                        {"fact": "lifecycle.stage", "in": ["declining", "lost"]}]}) == ""


def test_every_broken_segment_is_reported_with_its_line() -> None:
    text = ("segments:\n"
            "  - id: a\n    version: 1\n    where: {fact: purchases.cont, gte: 1}\n"
            "  - id: a\n    version: 0\n    where: {fact: purchases.count, gte: 1}\n"
            "  - id: b\n    version: 1\n    where: {fact: purchases.count, gte: 1}\n    colour: red\n")
    with pytest.raises(RuleErrors) as caught:
        read_segments(text, "s.yaml")
    lines = [str(e) for e in caught.value.errors]
    assert lines == [
        "s.yaml:4:13: segment a (v1): where.fact: unknown fact 'purchases.cont' (did you mean 'purchases.count'?)",
        "s.yaml:6:5: segment a (v0): version: expected a whole number >= 1, got 0",
        "s.yaml:11:5: segment b (v1): colour: unknown field 'colour' (expected id, version, where, description)",
    ]


def test_an_id_used_twice_is_an_error() -> None:
    data = {"segments": [{"id": "a", "version": 1, "where": {"fact": "touchpoints", "gt": 0}}] * 2}
    with pytest.raises(RuleErrors, match="id 'a' is already used by segment 1"):
        compile_segments(data, "f.yaml")


def test_a_customer_enters_and_leaves_as_their_view_changes() -> None:
    segments = compile_segments({"segments": [
        {"id": "one_time", "version": 2, "where": {"fact": "purchases.count", "eq": 1}},
        {"id": "complaint", "version": 1, "where": {"fact": "open_complaints", "gt": 0}}]}, "f.yaml")
    first = evolve(initial_view("c-1"), tp.purchase("p1", tp.at(0)))
    assert [(c.segment, c.kind, c.version) for c in changes([(None, first)], segments)] == [("one_time", ENTERED, 2)]
    later = reduce(evolve, [tp.purchase("p2", tp.at(3)), tp.case("k1", "k", "opened", tp.at(4),
                                                                  category="complaint")], first)
    moved = changes([(first, later)], segments)
    assert [(c.segment, c.kind) for c in moved] == [("complaint", ENTERED), ("one_time", EXITED)]
    assert members_of(later, segments) == {"complaint"}
    assert changes([(later, later)], segments) == []


def test_the_check_command_says_ok_or_lists_errors(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "services.cli", "segments", "check", "rules/segments.yaml"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("rules/segments.yaml: OK, 6 segments: high_value (v1)")
    bad = tmp_path / "bad.yaml"
    bad.write_text("segments:\n  - id: old\n    version: 1\n    where: {fact: days_in_stage, gt: 30}\n")
    done = subprocess.run([sys.executable, "-m", "services.cli", "segments", "check", str(bad)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"{bad}:4:13: segment old (v1): where.fact: 'days_in_stage' depends on the current time" in done.stderr
