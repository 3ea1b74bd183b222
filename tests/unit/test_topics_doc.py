"""docs/TOPICS.md is generated from schemas/topics.yaml and the code that writes each
record's headers; it fails here while it is stale."""

from __future__ import annotations

import yaml

from services.contracts.registry import SCHEMAS_DIR
from services.contracts.topics_doc import TOPICS_DOC, headers_of, render_markdown


def test_the_topics_page_is_current() -> None:
    assert TOPICS_DOC.read_text(encoding="utf-8") == render_markdown(), (
        "docs/TOPICS.md is stale: run `touchstream topics-doc --out docs/TOPICS.md`")


def test_every_kafka_topic_says_what_writes_its_headers_and_every_record_carries_cloudevents() -> None:
    streams = yaml.safe_load((SCHEMAS_DIR / "topics.yaml").read_text(encoding="utf-8"))["streams"]
    topics = [s["name"] for s in streams if s.get("kind") == "kafka"]
    for topic in topics:
        kinds = headers_of(topic)
        assert kinds, f"{topic}: no code writes its headers here (services/contracts/topics_doc.py)"
        for label, headers in kinds:
            names = {name for name, _ in headers}
            if label == "a dead letter":  # the failed record's own headers, a new ce_id and where it came from
                assert {"ce_id", "touchstream-dead-letter-reason", "touchstream-source-topic"} <= names, names
            else:
                assert {"ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time"} <= names, (topic, label, names)


def test_every_stream_entry_is_plain_text_where_the_page_prints_it() -> None:
    """A ``:`` inside an unquoted YAML list item makes a mapping, not text."""
    for stream in yaml.safe_load((SCHEMAS_DIR / "topics.yaml").read_text(encoding="utf-8"))["streams"]:
        for field in ("producers", "consumers"):
            assert all(isinstance(item, str) for item in stream.get(field) or []), (stream["name"], field)
