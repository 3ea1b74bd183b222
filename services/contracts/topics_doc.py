"""docs/TOPICS.md, generated: every Kafka topic of ``schemas/topics.yaml`` with its key,
value contracts, headers, retention, producers and consumers, for the teams that consume
them. The headers are read off the code that writes them (the builders the publisher and
the worker call, given sample arguments), so the page cannot promise a header a record
lacks. ``touchstream topics-doc --out docs/TOPICS.md`` writes it; a unit test fails while
it is stale.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from services.contracts.registry import SCHEMAS_DIR

__all__ = ["TOPICS_DOC", "render_markdown", "headers_of"]

TOPICS_DOC = Path(__file__).resolve().parents[2] / "docs" / "TOPICS.md"
Headers = Sequence[tuple[str, bytes]]


def _touchpoint() -> Headers:
    from services.scaleout.kafka.records import RESOLUTION_HEADER, cloudevents_headers

    document = {"event_id": "…", "type": "{type}", "source": "{source}", "occurred_at": "{occurred_at}"}
    return [*cloudevents_headers(document), (RESOLUTION_HEADER, b"{customer_id, conflicts} JSON")]


def _tick() -> Headers:
    from services.scaleout.kafka.records import tick_record

    return tick_record(datetime(2026, 1, 1, tzinfo=UTC), 0)[2]


def _derived(builder: str) -> Callable[[], Headers]:
    def headers() -> Headers:
        from services.scaleout.worker import fold, segment_fold

        match builder:
            case "view":
                return fold.view_event_headers("…", "…", 0, 0, 0)
            case "transition":
                return fold.transition_headers("…", 0)
            case "trigger":
                return fold.trigger_headers("…", 0)
            case _:
                return segment_fold.segment_headers("…", 0)
    return headers


def _dead_letter() -> Headers:
    from types import SimpleNamespace

    from services.scaleout.worker.fold import _dead_record  # noqa: PLC2701 - the one place it is built

    failed = SimpleNamespace(topic="…", partition=0, offset=0, key=None, value=None, headers=[])
    return [("(the failed record's own headers)", b""), *_dead_record(failed, "…", "…")[2]]


# topic name (or prefix, ending in ".") -> what writes its headers
_WRITERS: dict[str, list[tuple[str, Callable[[], Headers]]]] = {
    "touchstream.touchpoints.v1": [("a touchpoint", _touchpoint), ("a clock tick (no key)", _tick)],
    "touchstream.lifecycle.v1": [("a transition", _derived("transition"))],
    "touchstream.segments.v1": [("an entry or exit", _derived("segment"))],
    "touchstream.triggers.": [("a trigger", _derived("trigger"))],
    "touchstream.customer-views.v1": [("a view change", _derived("view"))],
    "touchstream.dead-letters.v1": [("a dead letter", _dead_letter)],
}


def headers_of(topic: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """For each kind of record of ``topic``: its name, and its headers (name, value when
    the same on every record, else empty)."""
    writers = _WRITERS.get(topic) or next((w for p, w in _WRITERS.items() if p.endswith(".") and topic.startswith(p)),
                                          [])
    out = []
    for label, writer in writers:
        shown = []
        for name, value in writer():
            text = value.decode("utf-8", "replace")
            constant = text and "…" not in text and "{" not in text and name not in ("ce_id", "ce_time")
            shown.append((name, text if constant else ""))
        out.append((label, shown))
    return out


def _cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def render_markdown() -> str:
    spec = yaml.safe_load((SCHEMAS_DIR / "topics.yaml").read_text(encoding="utf-8"))
    lines = ["# Kafka topics (scale-out runtime)", "",
             "Generated from `schemas/topics.yaml` and the code that writes each record's headers",
             "(`touchstream topics-doc --out docs/TOPICS.md`; `services/contracts/topics_doc.py`). Do not edit",
             "by hand. Records are keyed as stated; Avro values are single-object encoded (`C3 01`, the",
             "writer schema's CRC-64-AVRO fingerprint, little-endian, then the payload) and decoded with the",
             "contracts in `schemas/` (README, \"Reading the topics from your own consumer\").", ""]
    for stream in spec["streams"]:
        if stream.get("kind") != "kafka":
            continue
        name = stream["name"]
        lines += [f"## `{name}`", "", _cell(stream.get("doc", "")), "",
                  "| | |", "|---|---|",
                  f"| status | {stream.get('status', 'active')} |",
                  f"| key | `{stream.get('key')}` |",
                  f"| retention | cleanup policy `{stream.get('cleanup_policy')}` |"]
        schemas = stream.get("schemas") or []
        value = ", ".join(f"`{s['schema']}` ({s['type']})" for s in schemas) or _cell(stream.get("value", "—"))
        lines += [f"| value | {value} |",
                  f"| producers | {_cell(', '.join(stream.get('producers') or []))} |",
                  f"| consumers | {_cell(', '.join(stream.get('consumers') or []))} |", ""]
        for label, kinds in headers_of(name):
            lines += [f"Headers of {label}:", "", "| header | value |", "|---|---|"]
            lines += [f"| `{h}` | {f'`{v}`' if v else 'per record'} |" for h, v in kinds if not h.startswith("(")]
            if any(h.startswith("(") for h, _ in kinds):
                lines.append("| *the failed record's own headers* | as they were |")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"
