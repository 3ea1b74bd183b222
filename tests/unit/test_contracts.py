"""The Avro contracts: schemas mirror the touchpoint dataclasses, every example message
round-trips exactly, the bytes are Avro single-object encoded, and bad bytes fail with a
precise error."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projections import touchpoints as tp
from projections.codec import from_dict, to_dict
from projections.view.document import to_document
from projections.view.fold import evolve, initial_view
from services.contracts import (
    NotATouchpoint,
    NotSingleObjectEncoded,
    RecordDoesNotMatchSchema,
    SchemaRegistry,
    UndecodableRecord,
    UnknownSchemaFingerprint,
    UnknownSchemaId,
    decode,
    decode_record,
    encode,
    encode_record,
    fingerprint,
)
from services.contracts.registry import MARKER, SCHEMAS_DIR

REGISTRY = SchemaRegistry(SCHEMAS_DIR)
ENVELOPE = [f.name for f in dataclasses.fields(tp.Touchpoint)]
TOUCHPOINT_FAMILIES = [f"touchpoint/{name}" for name in tp.TOUCHPOINT_TYPES]
ALL_VERSIONS = [(f, v) for f in REGISTRY.families() for v in REGISTRY.versions(f)]
# v1 files are never edited: a structural change shows up here as a new fingerprint.
PINNED_V1_FINGERPRINTS = {
    "touchpoint/call": 0x09A8821EAB9EC38D,
    "touchpoint/consent": 0x1FFF65851F189CDC,
    "touchpoint/email": 0x94A726CDD85879FC,
    "touchpoint/purchase": 0xF1FCE0DE092D899A,
    "touchpoint/service_case": 0x7A275B6ECD73EEC2,
    "touchpoint/survey": 0xAC291F5600B5A73B,
    "touchpoint/visit": 0x36059241F1083296,
    "touchpoint/web_form": 0x5C5A43FB833DEF7D,
    "view/customer_view": 0x648298216FB3DE06,
}


def raw_schema(family: str, version: int = 1) -> dict[str, Any]:
    return json.loads((SCHEMAS_DIR / family / f"v{version}.avsc").read_text(encoding="utf-8"))


def examples(family: str) -> list[dict[str, Any]]:
    return REGISTRY.contract(family, 1).examples()


def example(type_name: str) -> dict[str, Any]:
    return copy.deepcopy(examples(f"touchpoint/{type_name}")[0])


# -- schemas mirror the dataclasses ------------------------------------------------------


def test_every_touchpoint_type_has_exactly_one_schema_family() -> None:
    touchpoint_families = [f for f in REGISTRY.families() if f.startswith("touchpoint/")]
    assert sorted(touchpoint_families) == sorted(TOUCHPOINT_FAMILIES)


@pytest.mark.parametrize("name", list(tp.TOUCHPOINT_TYPES))
def test_schema_fields_are_the_dataclass_fields_in_order_plus_the_type(name: str) -> None:
    cls = tp.TOUCHPOINT_TYPES[name]
    schema = raw_schema(f"touchpoint/{name}")
    fields = [f["name"] for f in schema["fields"]]
    assert [f for f in fields if f != "type"] == [f.name for f in dataclasses.fields(cls)]
    assert fields == list(to_dict(from_dict(example(name))))  # "type" sits where the codec puts it
    assert schema["namespace"] + "." + schema["name"] == f"touchstream.touchpoint.{cls.__name__}"


def test_every_touchpoint_schema_has_the_same_envelope() -> None:
    def envelope(name: str) -> list[dict[str, Any]]:
        fields = raw_schema(f"touchpoint/{name}")["fields"][: len(ENVELOPE) + 1]
        return [{k: v for k, v in f.items() if not (f["name"] == "type" and k == "doc")} for f in fields]

    reference = envelope("call")
    assert [f["name"] for f in reference] == ENVELOPE[:1] + ["type"] + ENVELOPE[1:]
    for name in tp.TOUCHPOINT_TYPES:
        assert envelope(name) == reference, name


def _walk(schema: Any, where: str) -> list[str]:
    """Every record or enum or field without a doc, by path."""
    missing: list[str] = []
    if isinstance(schema, list):
        return [m for branch in schema for m in _walk(branch, where)]
    if not isinstance(schema, dict):
        return []
    if schema.get("type") in ("record", "enum") and not schema.get("doc"):
        missing.append(where or schema["name"])
    for field in schema.get("fields", ()):
        path = f"{where}.{field['name']}" if where else field["name"]
        missing += [path] if not field.get("doc") else []
        missing += _walk(field["type"], path)
    for key in ("items", "values"):
        missing += _walk(schema.get(key), where + "[]")
    return missing


@pytest.mark.parametrize(("family", "version"), ALL_VERSIONS)
def test_every_record_enum_and_field_has_a_doc(family: str, version: int) -> None:
    assert _walk(raw_schema(family, version), "") == []


def _field(family: str, path: str) -> dict[str, Any]:
    schema: Any = raw_schema(family)
    for part in path.split("."):
        schema = schema.get("items", schema)
        field = next(f for f in schema["fields"] if f["name"] == part)
        schema = field["type"]
        schema = next((b for b in schema if b != "null"), schema) if isinstance(schema, list) else schema
    return schema  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("family", "path", "symbols"),
    [
        ("touchpoint/call", "channel", tuple(c.value for c in tp.Channel)),
        ("touchpoint/call", "direction", tp.CALL_DIRECTIONS),
        ("touchpoint/call", "outcome", tp.CALL_OUTCOMES),
        ("touchpoint/email", "status", tp.EMAIL_STATUSES),
        ("touchpoint/visit", "initiated_by", tp.VISIT_INITIATORS),
        ("touchpoint/service_case", "status", tp.CASE_STATUSES),
        ("touchpoint/service_case", "severity", tp.CASE_SEVERITIES),
        ("touchpoint/consent", "status", tp.CONSENT_STATUSES),
    ],
)
def test_closed_sets_are_enums_with_the_domain_symbols(
    family: str, path: str, symbols: tuple[str, ...]
) -> None:
    schema = _field(family, path)
    assert schema["type"] == "enum"
    assert tuple(schema["symbols"]) == symbols


@pytest.mark.parametrize(
    ("family", "path", "logical"),
    [
        ("touchpoint/purchase", "amount", "decimal"),
        ("touchpoint/purchase", "margin", "decimal"),
        ("touchpoint/purchase", "lines.unit_price", "decimal"),
        ("touchpoint/call", "occurred_at", "timestamp-micros"),
        ("touchpoint/call", "received_at", "timestamp-micros"),
    ],
)
def test_money_is_a_scale_4_decimal_and_instants_are_microsecond_timestamps(
    family: str, path: str, logical: str
) -> None:
    schema = _field(family, path)
    assert schema["logicalType"] == logical
    if logical == "decimal":
        assert (schema["type"], schema["precision"], schema["scale"]) == ("bytes", 20, 4)


# -- example messages ---------------------------------------------------------------------


@pytest.mark.parametrize(("family", "version"), ALL_VERSIONS)
def test_every_example_message_decodes_with_its_schema(family: str, version: int) -> None:
    messages = REGISTRY.contract(family, version).examples()
    assert len(messages) >= 2
    for message in messages:
        data = REGISTRY.encode_record(family, message, version=version)
        assert REGISTRY.decode_record(data, version=version) == (family, message)
        _, back = REGISTRY.decode_record(data, version=version)
        assert json.dumps(back) == json.dumps(message)  # same key order too: same bytes


@pytest.mark.parametrize("name", list(tp.TOUCHPOINT_TYPES))
def test_touchpoint_examples_are_in_the_canonical_form_and_decode_to_the_dataclass(name: str) -> None:
    for message in examples(f"touchpoint/{name}"):
        assert json.dumps(to_dict(from_dict(message))) == json.dumps(message)
        event = decode(encode_record(f"touchpoint/{name}", message))
        assert isinstance(event, tp.TOUCHPOINT_TYPES[name])
        assert event == from_dict(message)


def _nullable_paths(schema: dict[str, Any]) -> list[str]:
    paths = [f["name"] for f in schema["fields"] if isinstance(f["type"], list)]
    return paths + ["customer.customer_id"]


@pytest.mark.parametrize("name", list(tp.TOUCHPOINT_TYPES))
def test_examples_show_every_optional_field_both_set_and_null(name: str) -> None:
    seen: dict[str, set[bool]] = defaultdict(set)
    for message in examples(f"touchpoint/{name}"):
        for path in _nullable_paths(raw_schema(f"touchpoint/{name}")):
            value: Any = message
            for part in path.split("."):
                value = value[part]
            seen[path].add(value is None)
    assert {path: states for path, states in seen.items() if states != {True, False}} == {}


# -- the wire format -----------------------------------------------------------------------


def test_the_fingerprint_follows_the_avro_specification_test_vector() -> None:
    assert fingerprint("null") == 7195948357588979594  # schema-tests.txt in the Avro repo


@pytest.mark.parametrize(("family", "expected"), sorted(PINNED_V1_FINGERPRINTS.items()))
def test_v1_fingerprints_are_stable(family: str, expected: int) -> None:
    assert REGISTRY.contract(family, 1).fingerprint == expected
    assert SchemaRegistry(SCHEMAS_DIR).contract(family, 1).fingerprint == expected


def test_the_fingerprint_ignores_docs_but_not_structure() -> None:
    schema = raw_schema("touchpoint/call")
    redocumented = copy.deepcopy(schema)
    redocumented["doc"] = "another wording"
    redocumented["fields"][0]["doc"] = "another wording"
    extended = copy.deepcopy(schema)
    extended["fields"].append({"name": "mood", "type": ["null", "string"], "default": None})
    assert fingerprint(redocumented) == fingerprint(schema)
    assert fingerprint(extended) != fingerprint(schema)


def test_the_single_object_header_is_the_marker_then_the_little_endian_fingerprint() -> None:
    data = encode(from_dict(example("call")))
    expected = REGISTRY.contract("touchpoint/call").fingerprint
    assert data[:2] == MARKER == b"\xc3\x01"
    assert int.from_bytes(data[2:10], "little") == expected
    plain = fastavro.parse_schema(raw_schema("touchpoint/call"))
    payload = fastavro.schemaless_reader(io.BytesIO(data[10:]), plain)
    assert payload["event_id"] == example("call")["event_id"]  # plain Avro after the header


def test_decimals_come_back_with_exactly_the_schema_scale() -> None:
    message = example("purchase")
    message["amount"], message["margin"] = "154.65", "-3"
    _, back = decode_record(encode_record("touchpoint/purchase", message))
    assert (back["amount"], back["margin"]) == ("154.6500", "-3.0000")


def test_map_keys_are_written_sorted_so_equal_records_give_equal_bytes() -> None:
    message = example("web_form")
    shuffled = dict(message, fields=dict(reversed(list(message["fields"].items()))))
    assert encode_record("touchpoint/web_form", shuffled) == encode_record("touchpoint/web_form", message)


# -- precise errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "data", [b"", b"\xc3", b"\xc3\x01\x00\x01", b'{"type": "call"}', b"\x01\x00" + bytes(12), b"\x00\x01"]
)
def test_bytes_without_the_single_object_header_are_refused(data: bytes) -> None:
    with pytest.raises(NotSingleObjectEncoded):
        decode(data)


def test_a_zero_byte_starts_a_schema_registry_frame_whose_id_must_be_known() -> None:
    with pytest.raises(UnknownSchemaId) as raised:
        decode(b"\x00\x01" + bytes(12))
    assert raised.value.schema_id == 0x01000000


def test_a_schema_registry_frame_reads_back_once_its_id_is_learnt() -> None:
    registry = SchemaRegistry()
    event = from_dict(example("purchase"))
    registry.learn_registry_id(42, registry.contract("touchpoint/purchase"))
    framed = registry.encode(event, registry_id=42)
    assert framed[:5] == b"\x00\x00\x00\x00\x2a"
    assert registry.decode(framed) == event
    assert registry.decode(framed[5:].join([registry.contract("touchpoint/purchase").header, b""])) == event


def test_an_unknown_fingerprint_is_refused_naming_it() -> None:
    data = encode(from_dict(example("call")))
    forged = MARKER + (12345).to_bytes(8, "little") + data[10:]
    with pytest.raises(UnknownSchemaFingerprint) as raised:
        decode(forged)
    assert raised.value.fingerprint == 12345


def test_valid_avro_of_a_schema_the_registry_does_not_hold_is_refused(tmp_path: Path) -> None:
    family = tmp_path / "marketing" / "campaign"
    family.mkdir(parents=True)
    campaign = {"type": "record", "name": "Campaign", "fields": [{"name": "id", "type": "string"}]}
    (family / "v1.avsc").write_text(json.dumps(campaign))
    data = SchemaRegistry(tmp_path).encode_record("marketing/campaign", {"id": "spring-2024"})
    with pytest.raises(UnknownSchemaFingerprint) as raised:
        decode_record(data)
    assert raised.value.fingerprint == fingerprint(campaign)


def test_every_truncation_of_a_record_is_undecodable() -> None:
    data = encode(from_dict(example("purchase")))
    for end in range(10, len(data)):
        with pytest.raises(UndecodableRecord):
            decode(data[:end])


@pytest.mark.parametrize("junk", [b"\xff" * 40, b"\x80" * 40, b"\x02\x00", bytes(3)])
def test_garbage_after_a_valid_header_is_undecodable(junk: bytes) -> None:
    with pytest.raises(UndecodableRecord):
        decode(REGISTRY.contract("touchpoint/call").header + junk)


def test_trailing_bytes_after_a_record_are_undecodable() -> None:
    with pytest.raises(UndecodableRecord, match="trailing"):
        decode(encode(from_dict(example("call"))) + b"\x00")


def test_a_record_claiming_another_type_than_its_schema_is_undecodable() -> None:
    data = encode_record("touchpoint/call", dict(example("call"), type="email"))
    with pytest.raises(UndecodableRecord, match="email"):
        decode(data)


def test_decoding_a_customer_view_as_a_touchpoint_is_refused() -> None:
    data = encode_record("view/customer_view", examples("view/customer_view")[0])
    with pytest.raises(NotATouchpoint):
        decode(data)


@pytest.mark.parametrize(
    ("name", "change", "path"),
    [
        ("call", lambda d: d.update(outcome="hung_up"), "outcome"),
        ("call", lambda d: d.update(channel="pigeon"), "channel"),
        ("call", lambda d: d.update(duration_seconds=2**31), "duration_seconds"),
        ("call", lambda d: d.update(occurred_at="2024-03-05T09:12:31"), "occurred_at"),
        ("call", lambda d: d.pop("direction"), "direction"),
        ("call", lambda d: d.update(mood="happy"), "mood"),
        ("call", lambda d: d["customer"]["phones"].append(33612345678), "customer.phones[1]"),
        ("call", lambda d: d["attributes"].update(city=3), "attributes[city]"),
        ("purchase", lambda d: d["lines"][0].update(unit_price="12.34567"), "lines[0].unit_price"),
        ("purchase", lambda d: d.update(amount="1e30"), "amount"),
        ("purchase", lambda d: d.update(margin="NaN"), "margin"),
        ("purchase", lambda d: d.update(amount=154.65), "amount"),
    ],
)
def test_a_record_that_does_not_fit_its_schema_is_refused_naming_the_field(
    name: str, change: Any, path: str
) -> None:
    message = example(name)
    change(message)
    with pytest.raises(RecordDoesNotMatchSchema) as raised:
        encode_record(f"touchpoint/{name}", message)
    assert raised.value.path == path


# -- topics.yaml ----------------------------------------------------------------------------


TOPICS = yaml.safe_load((SCHEMAS_DIR / "topics.yaml").read_text(encoding="utf-8"))["streams"]


def test_topics_reference_only_existing_schema_files() -> None:
    referenced = [s["schema"] for topic in TOPICS for s in topic["schemas"]]
    assert referenced
    assert [path for path in referenced if not (SCHEMAS_DIR / path).is_file()] == []


def test_every_schema_file_is_carried_by_some_topic() -> None:
    referenced = {s["schema"] for topic in TOPICS for s in topic["schemas"]}
    on_disk = {p.relative_to(SCHEMAS_DIR).as_posix() for p in SCHEMAS_DIR.rglob("*.avsc")}
    assert on_disk - referenced == set()


@pytest.mark.parametrize(
    "stream", ["touchstream.touchpoints.v1", "embedded log: stored_events in log.sqlite"]
)
def test_every_touchpoint_schema_is_on_the_touchpoint_streams(stream: str) -> None:
    topic = next(t for t in TOPICS if t["name"] == stream)
    carried = {(s["type"], s["schema"]) for s in topic["schemas"]}
    latest = {
        (n, f"touchpoint/{n}/v{REGISTRY.versions(f'touchpoint/{n}')[-1]}.avsc") for n in tp.TOUCHPOINT_TYPES
    }
    assert latest <= carried


def test_every_topic_states_key_cleanup_owners_doc_and_what_its_values_are() -> None:
    assert len({t["name"] for t in TOPICS}) == len(TOPICS)
    for topic in TOPICS:
        assert topic["key"] and topic["doc"] and topic["producers"] and topic["consumers"], topic["name"]
        assert topic["cleanup_policy"] in {"delete", "compact", "none"}
        if topic["status"] == "planned":
            assert topic["schemas"] == [], topic["name"]
        else:  # an active stream names its contracts, or says what its values are
            assert topic["schemas"] or topic.get("value"), topic["name"]
    views = next(t for t in TOPICS if t["name"] == "touchstream.customer-views.v1")
    assert views["cleanup_policy"] == "compact"


# -- the published customer view ----------------------------------------------------------


def test_a_customer_view_folded_from_every_example_round_trips_through_avro() -> None:
    view = initial_view("cus_01HQ8Z4M2K")
    for name in tp.TOUCHPOINT_TYPES:
        for message in examples(f"touchpoint/{name}"):
            view = evolve(view, from_dict(message))
    document = to_document(view)
    assert document["purchases"]["by_currency"] and document["consents"]  # a rich view
    assert decode_record(encode_record("view/customer_view", document)) == ("view/customer_view", document)


# -- properties ------------------------------------------------------------------------------

_text = st.text(max_size=12)
_int32 = st.integers(-(2**31), 2**31 - 1)
_zones = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
_instants = st.datetimes(datetime(1900, 1, 1), datetime(2200, 1, 1), timezones=_zones)
_pairs = st.dictionaries(_text, _text, max_size=3).map(lambda d: tuple(sorted(d.items())))


def _money(places: st.SearchStrategy[int]) -> st.SearchStrategy[Decimal]:
    return st.builds(lambda n, p: Decimal(n).scaleb(-p), st.integers(-(10**16) + 1, 10**16 - 1), places)


def _own_fields(money: st.SearchStrategy[Decimal]) -> dict[str, dict[str, st.SearchStrategy[Any]]]:
    optional_text = st.none() | _text
    optional_int = st.none() | _int32
    lines = st.lists(st.builds(tp.PurchaseLine, _text, _int32, money, optional_text), max_size=3).map(tuple)
    return {
        "call": dict(direction=st.sampled_from(tp.CALL_DIRECTIONS), duration_seconds=_int32,
                     outcome=st.sampled_from(tp.CALL_OUTCOMES), reason=optional_text, agent_id=optional_text),
        "email": dict(status=st.sampled_from(tp.EMAIL_STATUSES), campaign_id=optional_text,
                      message_id=optional_text),
        "visit": dict(place=_text, purpose=_text, initiated_by=st.sampled_from(tp.VISIT_INITIATORS),
                      duration_minutes=optional_int),
        "web_form": dict(form_id=_text, fields=_pairs),
        # a purchase is never negative and a refund gives back more than nothing (the core refuses both)
        "purchase": dict(order_id=_text, amount=money.map(abs), currency=_text, margin=st.none() | money, lines=lines),
        "refund": dict(order_id=_text, amount=money.map(abs).filter(bool), currency=_text, margin=st.none() | money,
                       lines=lines, reason=optional_text),
        "service_case": dict(case_id=_text, status=st.sampled_from(tp.CASE_STATUSES),
                             severity=st.sampled_from(tp.CASE_SEVERITIES), category=optional_text),
        "survey": dict(survey_id=optional_text, csat=optional_int, nps=optional_int),
        "consent": dict(consent_channel=_text, purpose=_text, status=st.sampled_from(tp.CONSENT_STATUSES)),
    }


def touchpoints(
    money: st.SearchStrategy[Decimal] = _money(st.integers(0, 4)),
) -> st.SearchStrategy[tp.Touchpoint]:
    customers = st.builds(
        tp.CustomerRef, st.none() | _text, st.lists(_text, max_size=2).map(tuple),
        st.lists(_text, max_size=2).map(tuple),
        st.lists(st.builds(tp.ExternalId, _text, _text), max_size=2).map(tuple),
    )
    envelope = dict(event_id=_text, occurred_at=_instants, received_at=_instants, source=_text,
                    customer=customers, channel=st.sampled_from(tp.Channel), trigger_id=st.none() | _text,
                    attributes=_pairs)
    own = _own_fields(money)
    return st.one_of(*(st.builds(cls, **envelope, **own[name]) for name, cls in tp.TOUCHPOINT_TYPES.items()))


@pytest.mark.parametrize("name", list(tp.TOUCHPOINT_TYPES))
def test_the_property_strategies_cover_every_dataclass_field(name: str) -> None:
    own = {f.name for f in dataclasses.fields(tp.TOUCHPOINT_TYPES[name])} - set(ENVELOPE)
    assert set(_own_fields(_money(st.just(4)))[name]) == own


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(touchpoints())
def test_any_valid_touchpoint_round_trips_through_avro(event: tp.Touchpoint) -> None:
    decoded = decode(encode(event))
    assert decoded == event
    canonical = to_dict(decoded)  # decimals now carry exactly 4 places: a fixed point
    assert decode_record(encode_record(f"touchpoint/{event.type}", canonical))[1] == canonical


@settings(max_examples=100, deadline=None)
@given(st.lists(touchpoints(_money(st.just(4))), max_size=6))
def test_any_folded_customer_view_round_trips_through_avro(events: list[tp.Touchpoint]) -> None:
    view = initial_view("cus_property")
    for event in events:
        view = evolve(view, event)
    document = to_document(view)
    assert decode_record(encode_record("view/customer_view", document))[1] == document


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(TOUCHPOINT_FAMILIES), st.binary(max_size=80))
def test_random_bytes_after_a_valid_header_decode_or_fail_as_undecodable(family: str, junk: bytes) -> None:
    try:
        decode(REGISTRY.contract(family).header + junk)
    except UndecodableRecord:
        pass
