"""The backward-compatibility gate: every schema version reads what the previous one
wrote, checked on the repository's schemas and on schema directories built here."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from services.contracts import SchemaRegistry
from services.contracts.compatibility import Problem, check, main
from services.contracts.registry import SCHEMAS_DIR


def _load(path: str) -> Any:
    return json.loads((SCHEMAS_DIR / path).read_text(encoding="utf-8"))


CALL_V1 = _load("touchpoint/call/v1.avsc")
CALL_EXAMPLES = _load("touchpoint/call/v1.examples.json")
PURCHASE_V1 = _load("touchpoint/purchase/v1.avsc")
PURCHASE_EXAMPLES = _load("touchpoint/purchase/v1.examples.json")


def write_family(
    root: Path, family: str, versions: dict[int, dict[str, Any]], examples: dict[int, list[dict[str, Any]]]
) -> Path:
    folder = root / family
    folder.mkdir(parents=True, exist_ok=True)
    for version, schema in versions.items():
        (folder / f"v{version}.avsc").write_text(json.dumps(schema), encoding="utf-8")
    for version, messages in examples.items():
        (folder / f"v{version}.examples.json").write_text(json.dumps(messages), encoding="utf-8")
    return root


def field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in schema["fields"] if f["name"] == name)


def call_v2(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    schema = copy.deepcopy(CALL_V1)
    change(schema)
    return schema


def fitted(examples: list[dict[str, Any]], schema: dict[str, Any], **added: Any) -> list[dict[str, Any]]:
    """The examples with the fields ``schema`` dropped left out and ``added`` put in."""
    names = {f["name"] for f in schema["fields"]}
    return [{n: v for n, v in dict(e, **added).items() if n in names} for e in examples]


def compatibility_problems(problems: list[Problem]) -> list[tuple[str, int, str]]:
    return [(p.family, p.version, p.path) for p in problems]


# -- the repository --------------------------------------------------------------------------


def test_the_repository_schemas_are_backward_compatible() -> None:
    assert check(SCHEMAS_DIR) == []


def test_the_command_line_reports_ok_with_what_it_checked(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    registry = SchemaRegistry(SCHEMAS_DIR)
    versions = sum(len(registry.versions(f)) for f in registry.families())
    expected = f"OK: {len(registry.families())} families, {versions} versions checked"
    assert capsys.readouterr().out.strip() == expected


# -- compatible changes are accepted -------------------------------------------------------


def test_a_v2_that_adds_a_field_with_a_default_is_accepted_and_reads_v1_records(tmp_path: Path) -> None:
    sentiment = {"name": "sentiment", "type": ["null", "string"], "default": None}
    v2 = call_v2(lambda s: s["fields"].append(sentiment))
    v2_examples = fitted(CALL_EXAMPLES, v2, sentiment="positive")
    root = write_family(tmp_path, "touchpoint/call", {1: CALL_V1, 2: v2}, {1: CALL_EXAMPLES, 2: v2_examples})
    assert check(root) == []
    registry = SchemaRegistry(root)
    written_by_v1 = registry.encode_record("touchpoint/call", CALL_EXAMPLES[0], version=1)
    read_by_v2 = dict(CALL_EXAMPLES[0], sentiment=None)
    assert registry.decode_record(written_by_v1) == ("touchpoint/call", read_by_v2)
    assert registry.decode(written_by_v1).event_id == CALL_EXAMPLES[0]["event_id"]


@pytest.mark.parametrize(
    "change",
    [
        lambda s: field(s, "duration_seconds").update(type="long"),  # int promotes to long
        lambda s: field(s, "duration_seconds").update(type="double"),
        lambda s: s["fields"].remove(field(s, "agent_id")),  # a reader may drop a field
        lambda s: field(s, "outcome")["type"]["symbols"].append("transferred"),
        lambda s: field(s, "reason").update(type=["null", "string", "int"]),
        lambda s: field(s, "outcome")["type"].update(
            symbols=["reached", "no_answer", "voicemail", "busy", "declined"], default="declined"
        ),
    ],
    ids=["int-to-long", "int-to-double", "field-removed", "enum-symbol-added", "union-widened",
         "enum-symbol-removed-with-reader-default"],
)
def test_compatible_changes_are_accepted(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    v2 = call_v2(change)
    examples = {1: CALL_EXAMPLES, 2: fitted(CALL_EXAMPLES, v2)}
    root = write_family(tmp_path, "touchpoint/call", {1: CALL_V1, 2: v2}, examples)
    assert check(root) == []


# -- incompatible changes are rejected, naming the field -----------------------------------


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        (lambda s: s["fields"].append({"name": "sentiment", "type": "string"}), "sentiment",
         "without a default"),
        (lambda s: field(s, "duration_seconds").update(type="string", default="0"), "duration_seconds",
         "int to string"),
        (lambda s: field(s, "outcome")["type"]["symbols"].remove("declined"), "outcome", "['declined']"),
        (lambda s: field(s, "reason").update(type="string", default=""), "reason", "null"),
        (
            lambda s: field(field(s, "customer")["type"], "external_ids")["type"]["items"]["fields"][1]
            .update(type="int"),
            "customer.external_ids[].id",
            "string to int",
        ),
        (lambda s: field(s, "attributes").update(type={"type": "map", "values": "int"}), "attributes{}",
         "string to int"),
        (lambda s: field(s, "occurred_at").update(type={"type": "long", "logicalType": "timestamp-millis"}),
         "occurred_at", "logical type"),
        (lambda s: field(s, "channel")["type"].update(name="Medium"), "channel", "renamed"),
    ],
    ids=["field-added-without-default", "int-to-string", "enum-symbol-removed", "union-narrowed",
         "nested-record-field", "map-values", "logical-type", "enum-renamed"],
)
def test_incompatible_changes_are_rejected_naming_the_field(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], path: str, words: str
) -> None:
    root = write_family(tmp_path, "touchpoint/call", {1: CALL_V1, 2: call_v2(change)}, {1: CALL_EXAMPLES})
    structural = [p for p in check(root) if p.message.startswith("cannot read v1: ")]
    assert [(p.family, p.version, p.path) for p in structural] == [("touchpoint/call", 2, path)]
    assert words in structural[0].message


def test_a_decimal_whose_scale_changes_is_rejected(tmp_path: Path) -> None:
    v2 = copy.deepcopy(PURCHASE_V1)
    field(v2, "amount")["type"]["scale"] = 2
    root = write_family(tmp_path, "touchpoint/purchase", {1: PURCHASE_V1, 2: v2}, {1: PURCHASE_EXAMPLES})
    assert ("touchpoint/purchase", 2, "amount") in compatibility_problems(check(root))


def test_a_v1_example_the_v2_reader_cannot_read_is_reported(tmp_path: Path) -> None:
    declined = [dict(CALL_EXAMPLES[1], outcome="declined")]
    v2 = call_v2(lambda s: field(s, "outcome")["type"]["symbols"].remove("declined"))
    root = write_family(tmp_path, "touchpoint/call", {1: CALL_V1, 2: v2}, {1: declined, 2: CALL_EXAMPLES})
    messages = [p.message for p in check(root)]
    assert any(m.startswith("cannot read v1 example 0") and "declined" in m for m in messages), messages


# -- the directory itself ---------------------------------------------------------------------


def test_a_version_without_examples_is_reported(tmp_path: Path) -> None:
    root = write_family(tmp_path, "touchpoint/call", {1: CALL_V1}, {})
    assert [str(p) for p in check(root)] == ["touchpoint/call v1: no example messages beside v1.avsc"]


def test_an_example_that_does_not_fit_its_schema_is_reported_with_its_path(tmp_path: Path) -> None:
    broken = [dict(CALL_EXAMPLES[0], duration_seconds="five minutes")]
    root = write_family(tmp_path, "touchpoint/call", {1: CALL_V1}, {1: broken})
    assert compatibility_problems(check(root)) == [("touchpoint/call", 1, "duration_seconds")]


@pytest.mark.parametrize("content", ["[{", '{"event_id": "x"}'])
def test_an_examples_file_that_is_not_a_json_list_is_reported(tmp_path: Path, content: str) -> None:
    root = write_family(tmp_path, "touchpoint/call", {1: CALL_V1}, {})
    (root / "touchpoint/call/v1.examples.json").write_text(content, encoding="utf-8")
    problems = check(root)
    assert len(problems) == 1 and "v1.examples.json" in problems[0].message


def test_a_gap_in_the_versions_is_reported(tmp_path: Path) -> None:
    examples = {1: CALL_EXAMPLES, 3: CALL_EXAMPLES}
    root = write_family(tmp_path, "touchpoint/call", {1: CALL_V1, 3: CALL_V1}, examples)
    assert any("not 1..n" in p.message for p in check(root))


@pytest.mark.parametrize("name", ["call.avsc", "v0.avsc", "v1-draft.avsc"])
def test_a_schema_file_not_named_by_its_version_is_reported(tmp_path: Path, name: str) -> None:
    folder = write_family(tmp_path, "touchpoint/call", {1: CALL_V1}, {1: CALL_EXAMPLES}) / "touchpoint/call"
    (folder / name).write_text(json.dumps(CALL_V1), encoding="utf-8")
    assert [p.message for p in check(tmp_path)] == [f"{folder / name}: schema files are named v<N>.avsc"]


def test_an_unparsable_schema_is_reported(tmp_path: Path) -> None:
    broken = call_v2(lambda s: field(s, "outcome")["type"].update(symbols=["reached", "reached"]))
    root = write_family(tmp_path, "touchpoint/call", {1: broken}, {1: CALL_EXAMPLES})
    assert len(check(root)) == 1 and "v1.avsc" in check(root)[0].message


def test_the_command_line_prints_each_problem_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    v2 = call_v2(lambda s: field(s, "duration_seconds").update(type="string", default="0"))
    write_family(tmp_path, "touchpoint/call", {1: CALL_V1, 2: v2}, {1: CALL_EXAMPLES, 2: []})
    assert main([str(tmp_path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert (
        "touchpoint/call v2: duration_seconds: cannot read v1: "
        "type changed from int to string, which Avro cannot promote"
    ) in lines
    assert not any(line.startswith("OK:") for line in lines)


def test_an_empty_or_missing_directory_is_not_ok(tmp_path: Path) -> None:
    assert check(tmp_path) != []
    assert check(tmp_path / "absent") != []
