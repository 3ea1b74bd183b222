"""``touchstream rules check``: a rule file checked as marketing would, through the real CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from projections.nbc.rules import RuleErrors
from services.nbc.rules_file import read_rules

ROOT = Path(__file__).resolve().parents[2]

GOOD_RULE = """\
  - id: welcome
    version: 2
    purpose: marketing
    when: {lifecycle: {to: new}}
    what: {channel: email, action: welcome_pack, priority: 40, expected_value: 5, valid_for: 3d}
    constraints:
      consent: {purpose: marketing}
"""


def check(path: Path | str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.cli", "rules", "check", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_the_default_rules_check_ok_with_their_counts() -> None:
    done = check("rules/default.yaml")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ("rules/default.yaml: OK, version 1: 9 rules (touchpoint 2, lifecycle 3, after 3, "
                           "case_past_sla 1), 1 suppression\n")


def test_a_rule_reading_a_fact_the_view_lacks_yet_is_ok_with_a_note(tmp_path: Path) -> None:
    good = tmp_path / "rfm.yaml"
    good.write_text("version: 3\nrules:\n" + GOOD_RULE + "    who: {fact: value.rfm.segment, in: [at_risk, hibernating]}\n")
    done = check(good)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"{good}: OK, version 3: 1 rule (lifecycle 1), 0 suppressions",
        f"{good}: note: facts not on the view yet, the engine must supply them: value.rfm.segment",
    ]


def test_every_broken_rule_is_printed_with_its_line_and_the_check_fails(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    survey = """\
  - id: survey
    version: 1
    purpose: service
    when: {touchpoint: {type: service_case}}
    who:
      all:
        - {fact: service_cases.open, eq: 0}
        - {fact: satisfaction.csat, gte: two}
    what: {channel: email, action: survey, priority: 1, expected_value: 1, valid_for: 1d}
    constraints: {consent: not_required}
"""
    bad.write_text("version: 1\nrules:\n" + GOOD_RULE.replace("valid_for: 3d", "valid_for: 3 days") + survey)
    done = check(bad)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"{bad}:7:83: rule welcome (v2): what.valid_for: expected a duration (90m, 36h, 3d, 2w or 1 business "
        "hour), got '3 days'",
        f"{bad}:17:37: rule survey (v1): who.all[1].gte: expected a number, got 'two'",
        f"{bad}: 2 errors",
    ]


def test_a_yaml_syntax_error_is_reported_at_its_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "tab.yaml"
    bad.write_text("version: 1\nrules:\n  - id: welcome\n\tversion: 1\n")
    done = check(bad)
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == f"{bad}:4:1: YAML syntax: found character '\\t' that cannot start any token"


def test_a_missing_file_is_a_usage_error() -> None:
    done = check("rules/no-such-file.yaml")
    assert done.returncode == 2
    assert "does not exist" in done.stderr


def errors_of(text: str) -> list[str]:
    with pytest.raises(RuleErrors) as raised:
        read_rules(text, "r.yaml")
    return [str(e) for e in raised.value.errors]


def test_a_key_given_twice_is_an_error_not_a_silent_overwrite() -> None:
    text = "version: 1\nrules:\n" + GOOD_RULE.replace("    purpose: marketing\n",
                                                      "    purpose: marketing\n    purpose: service\n")
    assert errors_of(text) == ["r.yaml:6:5: YAML syntax: duplicate key 'purpose' (first at line 5)"]


def test_an_unknown_time_zone_is_an_error_at_its_line() -> None:
    assert errors_of("version: 1\ntimezone: Mars/Olympus_Mons\nrules:\n" + GOOD_RULE) == [
        "r.yaml:2:1: timezone: unknown time zone 'Mars/Olympus_Mons'"]


def test_an_unquoted_time_is_explained() -> None:
    text = "version: 1\nrules:\n" + GOOD_RULE + "      quiet_hours: {start: 21:00, end: '08:00', mode: defer}\n"
    assert errors_of(text) == ["r.yaml:10:21: rule welcome (v2): constraints.quiet_hours.start: expected a time of "
                               "day \"HH:MM\", got 1260 (quote it: YAML reads an unquoted 21:00 as a number)"]


def test_an_empty_file_says_what_a_rule_file_is() -> None:
    assert errors_of("") == ["r.yaml: expected a mapping with version, rules, timezone, business_hours, "
                             "suppressions, got nothing"]
