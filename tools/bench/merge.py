"""What a merge costs on the embedded runtime (docs/IDENTITY.md): the runner folding one
``customer_merged`` record — the customers concerned refolded from their own events and
every clock tick, the absorbed view removed, the portfolio moved — against the absorbed
customer's history (10 to 10,000 events), beside the same number of events folded as an
ordinary batch (the same-run baseline: what those events cost when they arrived)."""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from services.api.contracts import TOUCHPOINT_ADAPTER, to_canonical
from services.embedded.eventlog import TouchpointLog, merge_document
from services.embedded.runner import ProjectionRunner
from services.embedded.storage.unit import ViewStore
from services.gc_tuning import tune_gc
from services.settings import Settings
from tools.traffic import TrafficOptions, generate

__all__ = ["merge_cost"]

def _events(customer: str, count: int) -> list[dict[str, Any]]:
    """``count`` canonical touchpoints of the traffic generator's mix, all about ``customer``."""
    received, out = datetime.now(UTC), []
    for raw in generate(TrafficOptions(customers=1, events=count, seed=len(customer), duplicate_rate=0.0)):
        raw = {**raw, "event_id": f"{customer}-{raw['event_id']}", "customer": {"customer_id": customer}}
        out.append(to_canonical(TOUCHPOINT_ADAPTER.validate_python(raw), received))
    return out


def merge_cost(sizes: tuple[int, ...] = (10, 100, 1000, 10_000), survivor_events: int = 10) -> dict[str, Any]:
    tune_gc()
    rows = []
    for size in sizes:
        with tempfile.TemporaryDirectory() as scratch:
            settings = Settings(data_dir=Path(scratch))
            log, store = TouchpointLog(Path(scratch) / "log.sqlite"), ViewStore(Path(scratch) / "views.sqlite")
            log.append(_events("survivor", survivor_events))
            runner = ProjectionRunner(log, store, settings.fold_config(), batch=20_000)
            runner.catch_up()
            log.append(_events("absorbed", size))
            started = time.perf_counter()
            runner.catch_up()
            folded = time.perf_counter() - started
            log.append([merge_document("mrg_bench", "survivor", "absorbed", "bench", "bench", datetime.now(UTC))])
            started = time.perf_counter()
            runner.run_once()
            merged = time.perf_counter() - started
            assert store.dead_letters.count() == 0, store.dead_letters.rows()[:3]
            assert store.customers.state("absorbed") is None and runner.merges.root("absorbed") == "survivor"
            survivor = orjson.loads(store.customers.state("survivor") or b"{}")
            assert survivor["touchpoints"] == size + survivor_events, survivor.get("touchpoints")
            store.datastore.close()
            log.close()
        rows.append({"absorbed_events": size, "merge_ms": round(merged * 1000, 1),
                     "fold_as_batch_ms": round(folded * 1000, 1),
                     "us_per_absorbed_event": round(merged / (size + survivor_events) * 1e6, 1)})
    return {"survivor_events": survivor_events, "rows": rows,
            "per_event_10k_vs_1k": round(rows[-1]["us_per_absorbed_event"] / rows[-2]["us_per_absorbed_event"], 2)
            if len(rows) > 1 else None}


if __name__ == "__main__":
    import json

    print(json.dumps(merge_cost(), indent=2))
