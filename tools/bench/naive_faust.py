"""The naive faust pipeline the Kafka benchmark compares the view worker with.

The textbook faust way to keep a per-customer view: one agent over the touchpoints
topic and a Table keyed by customer id holding the stored state (``to_state`` as JSON
bytes, what the worker stores in Redis). Per event: decode the record, read the table,
evolve, write the table back (faust sends each write to the table's changelog topic).
Same core, same records, same broker as the other paths; only the machinery differs.

Run as its own process (faust owns the event loop and the signals):
``python -m tools.bench.naive_faust --events N --result FILE --datadir DIR [--topic T]``;
the broker and its timeouts come from ``services.settings`` (``TOUCHSTREAM_KAFKA_*``).
The agent's consumer group is ``--app-id`` (a fresh one per run), reading from the
earliest offset. Once N events are folded it writes ``FILE`` (JSON): ``events``,
``seconds``, ``cpu_seconds``, ``events_per_second`` and ``events_per_cpu_second`` from
the first event folded to the N-th (``tools.bench.kafka.rates``),
``digest`` of every customer's state (``tools.bench.kafka.states_digest``),
``customers`` and the fetch wait the consumer really runs with; then it stops itself.
"""

from __future__ import annotations

import argparse
import os
import signal
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import faust
import orjson

from projections.identity import settled
from projections.view.document import from_state, to_state
from projections.view.fold import evolve, initial_view
from services.gc_tuning import tune_gc
from services.scaleout.kafka.faust_transport import make_app
from services.scaleout.kafka.records import BadRecord, read_touchpoint
from services.scaleout.kafka.topics import TOUCHPOINTS_TOPIC
from services.settings import Settings
from tools.bench.kafka import clock, rates, states_digest

__all__ = ["build", "main"]


def build(settings: Settings, app_id: str, topic: str, events: int, result: Path, datadir: Path) -> faust.App:
    app = make_app(app_id, settings, datadir=datadir, web_enabled=False, store="memory://",
                   consumer_auto_offset_reset="earliest")
    source = app.topic(topic, key_serializer="raw", value_serializer="raw")
    views = app.Table("views", default=None, key_type=str, value_type=bytes,
                      partitions=settings.kafka_partitions)
    progress: dict[str, Any] = {"folded": 0, "dead": 0, "first": None}

    @app.agent(source)
    async def fold(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            if progress["first"] is None:
                progress["first"] = clock()
            try:
                read = read_touchpoint(message.value, message.key, _pairs(message.headers))
            except BadRecord:
                progress["dead"] += 1
            else:
                stored = views.get(read.customer_id)
                view = from_state(orjson.loads(stored)) if stored is not None else initial_view(read.customer_id)
                after = evolve(view, settled(read.event, read.customer_id, read.conflicts).folded)
                views[read.customer_id] = orjson.dumps(to_state(after))
            progress["folded"] += 1
            if progress["folded"] == events:
                _finish(app, views, progress, result)

    return app


def _finish(app: faust.App, views: Any, progress: dict[str, Any], result: Path) -> None:
    measured = rates(progress["folded"], progress["first"])
    states = {_text(k): bytes(v) for k, v in views.data.items()}
    consumer = app.consumer._thread._consumer  # type: ignore[attr-defined]  # the aiokafka consumer faust created
    report = {**measured, "dead": progress["dead"], "customers": len(states), "digest": states_digest(states),
              "fetch_max_wait_ms": consumer._fetcher._fetch_max_wait_ms}
    partial = result.with_suffix(".partial")
    partial.write_bytes(orjson.dumps(report))
    partial.rename(result)  # the harness never reads half a file
    os.kill(os.getpid(), signal.SIGTERM)  # faust's own graceful shutdown


def _pairs(headers: Any) -> list[tuple[str, bytes]]:
    if isinstance(headers, Mapping):
        return list(headers.items())
    return list(headers or ())


def _text(key: Any) -> str:
    return key.decode() if isinstance(key, bytes) else str(key)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--datadir", type=Path, required=True)
    parser.add_argument("--topic", default=TOUCHPOINTS_TOPIC)
    parser.add_argument("--app-id", default=f"bench-naive-faust-{uuid.uuid4().hex[:8]}")
    args = parser.parse_args(argv)
    app = build(Settings(), args.app_id, args.topic, args.events, args.result, args.datadir)
    tune_gc()  # the same collector settings as every folding process
    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
