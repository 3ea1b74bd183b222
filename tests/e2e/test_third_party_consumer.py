"""A downstream team's consumer: ``confluent-kafka`` (librdkafka, not the platform's own
aiokafka) in its own consumer group reads every topic the platform writes for a customer
and decodes each record with nothing but the contracts in ``schemas/`` and fastavro, as
README ("Reading the topics") shows: Avro single-object records by their schema's
CRC-64-AVRO fingerprint, the published view as JSON, CloudEvents headers on every one."""

from __future__ import annotations

import io
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka import Consumer, KafkaError

from tests.support.api import Api, consent, purchase, unique

pytestmark = [pytest.mark.e2e, pytest.mark.only_runtimes("kafka")]

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def contracts() -> dict[bytes, Any]:
    """Every contract version in schemas/, by the fingerprint a single-object record carries."""
    found = {}
    for path in SCHEMAS.rglob("v*.avsc"):
        parsed = fastavro.parse_schema(json.loads(path.read_text(encoding="utf-8")), named_schemas={})
        canonical = fastavro.schema.to_parsing_canonical_form(parsed)
        found[bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))] = parsed  # the wire's order
    return found


def decoded(value: bytes, known: dict[bytes, Any]) -> dict[str, Any]:
    """An Avro single-object record (C3 01, the fingerprint little-endian, the payload) or JSON."""
    if value[:2] == b"\xc3\x01":
        return fastavro.schemaless_reader(io.BytesIO(value[10:]), known[value[2:10]])  # type: ignore[return-value]
    return json.loads(value)  # type: ignore[no-any-return]


def test_a_librdkafka_consumer_reads_and_decodes_every_topic_for_a_customer(api: Api) -> None:
    uid = unique()
    customer = {"customer_id": f"{uid}-c", "emails": [f"{uid}@example.com"]}
    now = datetime.now(UTC).replace(microsecond=0)
    position = api.ingest([
        consent(f"{uid}-consent", now - timedelta(hours=2), customer, consent_channel="email", purpose="marketing",
                status="granted"),
        purchase(f"{uid}-p", now - timedelta(hours=1), customer, order_id=f"{uid}-o", amount="49.90"),
    ])["position"]
    view = api.customer(customer["customer_id"], min_position=position)
    assert view["lifecycle"]["stage"] == "new"

    topics = ["touchstream.touchpoints.v1", "touchstream.lifecycle.v1", "touchstream.customer-views.v1",
              "touchstream.triggers.email.v1", "touchstream.segments.v1"]
    consumer = Consumer({"bootstrap.servers": api.runtime.stack.bootstrap, "group.id": f"downstream-{uid}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    known, seen = contracts(), {topic: [] for topic in topics}  # type: dict[bytes, Any], dict[str, list[Any]]
    consumer.subscribe(topics)
    try:
        deadline = time.monotonic() + 60
        # both touchpoints, and something on each derived topic a purchase writes to
        while time.monotonic() < deadline and not (len(seen[topics[0]]) >= 2 and all(seen[t] for t in topics[1:4])):
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None or message.error().code() == KafkaError._PARTITION_EOF, message.error()
            if message.error() or message.key() != customer["customer_id"].encode():
                continue
            headers = dict(message.headers() or [])
            assert {"ce_id", "ce_type", "ce_source", "ce_time", "ce_specversion"} <= set(headers), headers
            seen[message.topic()].append(decoded(message.value(), known))
    finally:
        consumer.close()
    assert {e["event_id"] for e in seen["touchstream.touchpoints.v1"]} == {f"{uid}-consent", f"{uid}-p"}
    assert [(t["from_stage"], t["to_stage"]) for t in seen["touchstream.lifecycle.v1"]] == [("prospect", "new")]
    assert seen["touchstream.customer-views.v1"][-1]["purchases"]["count"] == 1
    assert [t["rule_id"] for t in seen["touchstream.triggers.email.v1"]] == ["welcome"]
