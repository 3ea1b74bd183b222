"""``services.state_diff``: the field paths at which two stored states differ, and the
bounded report of a replay's differing customers."""

from __future__ import annotations

import orjson

from services.state_diff import MAX_CUSTOMERS, MAX_PATHS, Comparison, differences


def test_equal_documents_have_no_differences() -> None:
    state = {"touchpoints": 3, "lifecycle": ["active", 5, [[1, 2], [3, 4]]], "contact": {"last_fired": [7]}}
    assert differences(state, orjson.loads(orjson.dumps(state))) == []


def test_values_that_differ_are_named_by_their_path_in_nested_dicts_and_lists() -> None:
    a = {"touchpoints": 3, "contact": {"last_fired": [7, 8], "sent": {"email": 1}},
         "lifecycle": {"history": [{"at": 1}, {"at": 2}, {"at": 3}]}}
    b = {"touchpoints": 4, "contact": {"last_fired": [9, 8], "sent": {"email": 1}},
         "lifecycle": {"history": [{"at": 1}, {"at": 2}, {"at": 30}]}}
    assert differences(a, b) == ["touchpoints", "contact.last_fired[0]", "lifecycle.history[2].at"]


def test_positional_records_are_named_by_index() -> None:
    assert differences({"lifecycle": ["active", 1, [[5, "new"]]]},
                       {"lifecycle": ["active", 1, [[5, "lost"]]]}) == ["lifecycle[2][0][1]"]


def test_a_list_of_another_length_is_named_once_as_a_whole() -> None:
    a = {"seen": ["e1", "e2", "e3"], "recent": [[1], [2]]}
    b = {"seen": ["e0", "e1", "e2", "e3"], "recent": [[1], [3]]}
    assert differences(a, b) == ["seen", "recent[1][0]"]


def test_keys_on_one_side_only_are_named() -> None:
    assert differences({"a": 1, "b": 2}, {"a": 1, "c": 2}) == ["b", "c"]
    assert differences({"x": {"y": 1}}, {"x": {}}) == ["x.y"]


def test_values_of_another_json_type_differ() -> None:
    a = {"n": 1, "flag": 1, "csat": None, "m": "1.0", "x": {"k": 1}}
    b = {"n": 1.0, "flag": True, "csat": [4, 1], "m": 1.0, "x": [1]}
    assert differences(a, b) == ["n", "flag", "csat", "m", "x"]


def test_the_comparison_counts_every_customer_and_names_a_bounded_few() -> None:
    comparison = Comparison()
    same = orjson.dumps({"touchpoints": 1})
    assert comparison.compare("c-same", same, same)
    wide_a = orjson.dumps({f"f{i:02}": i for i in range(15)})
    wide_b = orjson.dumps({f"f{i:02}": -i - 1 for i in range(15)})
    for n in range(MAX_CUSTOMERS + 5):
        assert not comparison.compare(f"c{n:02}", wide_a, wide_b)
    report = comparison.report()
    assert comparison.compared == MAX_CUSTOMERS + 6
    assert report["differing_customers"] == MAX_CUSTOMERS + 5
    assert len(report["differences"]) == MAX_CUSTOMERS
    first = report["differences"][0]
    assert first["customer_id"] == "c00" and first["fields_differing"] == 15
    assert first["fields"] == [f"f{i:02}" for i in range(MAX_PATHS)]


def test_a_customer_missing_on_one_side_or_encoded_differently_is_still_a_difference() -> None:
    comparison = Comparison()
    assert not comparison.compare("gone", b'{"a":1}', None)
    assert not comparison.compare("extra", None, b'{"a":1}')
    assert not comparison.compare("reordered", b'{"a":1,"b":2}', b'{"b":2,"a":1}')
    assert not comparison.compare("garbage", b'{"a":1}', b"\xff")
    gone, extra, reordered, garbage = comparison.report()["differences"]
    assert gone == {"customer_id": "gone", "missing_from": "live"}
    assert extra == {"customer_id": "extra", "missing_from": "replay"}
    assert reordered["fields"] == [] and "encoded differently" in reordered["note"]
    assert garbage["fields"] == [] and "not JSON" in garbage["note"]
