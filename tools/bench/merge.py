"""What merges cost on the embedded runtime (docs/IDENTITY.md).

``merge_cost``: the runner folding one ``customer_merged`` record — the customers
concerned refolded from their own events and every clock tick, the absorbed view
removed, the portfolio moved — against the absorbed customer's history (10 to 10,000
events), beside the same number of events folded as an ordinary batch (the same-run
baseline: what those events cost when they arrived).

``policy_overhead``: the automatic merge policy's cost on the fold per event. One log of
the traffic generator's mix in which one event in 50 also carries identifiers of another
customer (an identity conflict), folded batch by batch with ``fold_records`` and committed,
once without a policy and once with one deciding on every conflict (its decisions
committed to the outbox, as the live runner does before appending them) — the same
events, the same commits; best of three runs each, interleaved. Folding the merges the
policy decides costs what ``merge_cost`` measures."""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from services.api.contracts import TOUCHPOINT_ADAPTER, to_canonical
from services.embedded.eventlog import TouchpointLog, merge_document
from projections.merge_policy import MergePolicy
from services.embedded.runner import ProjectionRunner, fold_records
from services.embedded.storage.unit import ViewStore
from services.gc_tuning import tune_gc
from services.settings import Settings
from tools.traffic import TrafficOptions, generate

__all__ = ["merge_cost", "policy_overhead"]

BENCH_POLICY = MergePolicy({"external_id": "alone", "email": "with_another"})

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


def _conflicting_log(events: int, customers: int, every: int) -> list[dict[str, Any]]:
    """The generator's events; one in ``every`` also carries the email and phone of
    another customer seen earlier (a conflict the bench policy merges on)."""
    received, out = datetime.now(UTC), []
    known: dict[str, tuple[str, str]] = {}  # customer -> (email, phone), once both were seen
    seen: dict[str, dict[str, str]] = {}
    for n, raw in enumerate(generate(TrafficOptions(customers=customers, events=events, seed=11,
                                                    duplicate_rate=0.0))):
        ref = raw["customer"]
        mine = seen.setdefault(ref["customer_id"], {})
        if ref["emails"]:
            mine.setdefault("email", ref["emails"][0])
        if ref["phones"]:
            mine.setdefault("phone", ref["phones"][0])
        if len(mine) == 2:
            known[ref["customer_id"]] = (mine["email"], mine["phone"])
        if n % every == 0 and known:
            other = next(c for c in known if c != ref["customer_id"]) if len(known) > 1 else None
            if other is not None:
                email, phone = known.pop(other)  # each claimant once: merges do not cascade
                raw = {**raw, "customer": {**ref, "emails": [*ref["emails"], email], "phones": [*ref["phones"], phone]}}
        out.append(to_canonical(TOUCHPOINT_ADAPTER.validate_python(raw), received))
    return out


def policy_overhead(events: int = 60_000, customers: int = 6_000, every: int = 50, batch: int = 2000,
                    runs: int = 3) -> dict[str, Any]:
    tune_gc()
    documents = _conflicting_log(events, customers, every)
    timings: dict[str, list[float]] = {"without_policy": [], "with_policy": []}
    decided = conflicts = 0
    with tempfile.TemporaryDirectory() as scratch:
        log = TouchpointLog(Path(scratch) / "log.sqlite")
        log.append(documents)
        config = Settings(data_dir=Path(scratch)).fold_config()
        records = [r for i in range(0, len(documents), batch) for r in [log.read(i, batch)]]
        for run in range(runs):
            for name, policy in (("without_policy", None), ("with_policy", BENCH_POLICY)):
                store = ViewStore(Path(scratch) / f"views-{name}-{run}.sqlite")
                runner = ProjectionRunner(log, store, config)  # its cache and clock, as live
                started = time.perf_counter()
                for chunk in records:
                    changes = fold_records(chunk, store, runner.cache, config, clock=runner.clock,
                                           memo=runner.segment_memo, merges=runner.merges, policy=policy)
                    store.commit(changes)
                    runner.cache.keep(changes.views)
                    runner.clock = changes.clock
                timings[name].append(time.perf_counter() - started)
                if policy is not None:
                    decided = len(store.identity.outbox())
                    conflicts = store.identity.count_conflicts()
                store.datastore.close()
        log.close()
    best = {name: min(values) for name, values in timings.items()}
    return {"events": len(documents), "conflicts": conflicts, "policy_merges_decided": decided,
            "without_policy_events_per_second": round(len(documents) / best["without_policy"]),
            "with_policy_events_per_second": round(len(documents) / best["with_policy"]),
            "overhead_percent": round((best["with_policy"] / best["without_policy"] - 1) * 100, 1)}


if __name__ == "__main__":
    import json

    print(json.dumps({"merge": merge_cost(), "policy": policy_overhead()}, indent=2))
