"""The batch decider beside a baseline revision, measured in the same run.

``touchstream bench --decider [--baseline REV]`` checks REV out into a temporary git
worktree and measures the same things on both trees, alternately (baseline, current,
baseline, current: a shared machine's drift hits both alike), each in its own process:

* **history length**: one customer's fold cost per event and stored state bytes after
  10, 100, 1,000 and 10,000 touchpoints, for emails only (the case that exposed the
  ever-growing state) and for a mix of every type with a purchase in ten;
* **embedded runner**: a generated log folded by ``ProjectionRunner`` as the platform
  folds it (events per second, peak memory);
* **scale-out worker** (with ``kafka``): ``touchstream worker`` folding a preloaded topic
  on a private Tansu broker and Redis (events per second of wall and of CPU time).

The measuring code below only uses what both trees have (``evolve``, ``to_state``, the
runner, the worker's command line), so the baseline runs its own code, unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["run_decider_bench", "BASELINE"]

REPO = Path(__file__).resolve().parents[2]
BASELINE = "cc49017"  # the last revision before the batch decider
LENGTHS = (10, 100, 1_000, 10_000)

_HISTORY = r'''
import json, sys, time
from datetime import timedelta
import orjson
try:  # this tree's layout, else the baseline's flat one
    from projections.view.fold import evolve, initial_view
    from projections.view.document import to_state
except ImportError:
    from projections.view import evolve, initial_view
    from projections.view_document import to_state
from projections.touchpoints import CustomerRef
from tests.support import touchpoints as tp

REF = CustomerRef(customer_id="c-1", emails=("ana@example.com",))

def event(i, mixed):
    when = tp.T0 + timedelta(minutes=37 * i)
    if not mixed:
        return tp.email(f"e{i:06d}", when, "sent", ref=REF)
    k = i % 10
    if k == 0: return tp.purchase(f"e{i:06d}", when, "19.90", ref=REF)
    if k in (1, 8): return tp.email(f"e{i:06d}", when, "opened", ref=REF)
    if k == 2: return tp.call(f"e{i:06d}", when, ref=REF)
    if k == 3: return tp.case(f"e{i:06d}", f"case-{i // 20}", ("opened", "resolved")[(i // 10) % 2], when, ref=REF)
    if k == 4: return tp.survey(f"e{i:06d}", when, csat=1 + i % 5, ref=REF)
    if k == 5: return tp.visit(f"e{i:06d}", when, ref=REF)
    if k == 6: return tp.consent(f"e{i:06d}", "granted", when, ref=REF)
    return tp.web_form(f"e{i:06d}", when, {"first_name": f"N{i}"}, ref=REF)

out = {}
for mixed in (False, True):
    lengths, probe = json.loads(sys.argv[1]), 200
    events = [event(i, mixed) for i in range(max(lengths) + probe)]
    view, done, rows = initial_view("c-1"), 0, {}
    for n in lengths:
        for e in events[done:n]:
            view = evolve(view, e)
        done = n
        best = None
        for _ in range(3):  # the next ``probe`` events from the same view: cost per event at this length
            started = time.perf_counter()
            v = view
            for e in events[n:n + probe]:
                v = evolve(v, e)
            spent = (time.perf_counter() - started) / probe
            best = spent if best is None else min(best, spent)
        rows[n] = {"us_per_event": round(best * 1e6, 1), "state_bytes": len(orjson.dumps(to_state(view)))}
    out["mixed" if mixed else "emails"] = rows
print(json.dumps(out))
'''

_RUNNER = r'''
# The runner folds the log as the platform of its revision folds it: lifecycle stages, RFM
# cells, the default rules and the default segments (the baseline's own bench left
# segments out, so its figure is not the platform's).
import json, sys, time
from pathlib import Path
directory = Path(sys.argv[1])
from services.gc_tuning import tune_gc
from services.settings import Settings
settings = Settings(data_dir=directory)
if Path("services/runner.py").exists():  # the baseline's flat layout
    from services.eventlog import TouchpointLog
    from services.runner import ProjectionRunner
    from services.segments_file import load_segments
    from services.viewstore import ViewStore
    store = ViewStore(directory / "views.sqlite")
    log = TouchpointLog(directory / "log.sqlite")
    runner = ProjectionRunner(log, store, batch=2000, lifecycle=settings.lifecycle(),
                              tick_limit=settings.lifecycle_tick_limit, currency=settings.value_currency,
                              engine=settings.contact_engine(), segments=load_segments(settings.segments_file))
    customers = lambda: store.count("customer_views")
else:
    from services.embedded.eventlog import TouchpointLog
    from services.embedded.runner import ProjectionRunner
    from services.embedded.storage.unit import ViewStore
    store = ViewStore(directory / "views.sqlite")
    log = TouchpointLog(directory / "log.sqlite")
    runner = ProjectionRunner(log, store, settings.fold_config(), batch=2000)
    customers = store.customers.count
tune_gc()
started = time.perf_counter()
runner.catch_up()
seconds = time.perf_counter() - started
print(json.dumps({"events": runner.position, "customers": customers(), "seconds": round(seconds, 2),
                  "events_per_second": round(runner.position / seconds),
                  "us_per_event": round(seconds / runner.position * 1e6, 1)}))
'''


def _run(tree: Path, code: str, *args: str, timeout: float = 1800) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=tree, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"measuring in {tree} failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@contextmanager
def _checkout(revision: str) -> Iterator[Path]:
    where = Path(tempfile.mkdtemp(prefix="touchstream-baseline-"))
    subprocess.run(["git", "worktree", "add", "--detach", str(where), revision], cwd=REPO, check=True,
                   capture_output=True)
    try:
        yield where
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(where)], cwd=REPO, check=False,
                       capture_output=True)
        shutil.rmtree(where, ignore_errors=True)


def _runner(tree: Path, log: Path, base: Path, name: str) -> dict[str, Any]:
    """A fresh view store over a copy of the same log."""
    here = base / name
    here.mkdir(parents=True, exist_ok=True)
    shutil.copy(log, here / "log.sqlite")
    try:
        return _run(tree, _RUNNER, str(here))
    finally:
        shutil.rmtree(here, ignore_errors=True)


def run_decider_bench(*, baseline: str = BASELINE, events: int = 50_000, customers: int = 10_000,
                      kafka: bool = False, kafka_events: int = 50_000, rounds: int = 2) -> dict[str, Any]:
    from tools.bench.scale import write_log

    results: dict[str, Any] = {"baseline": baseline, "current": _head(), "lengths": list(LENGTHS),
                               "load_average_before": os.getloadavg()}
    base = Path(tempfile.mkdtemp(prefix="touchstream-decider-bench-"))
    try:
        with _checkout(baseline) as old:
            trees = {"baseline": old, "current": REPO}
            history: dict[str, list[dict[str, Any]]] = {"baseline": [], "current": []}
            runner: dict[str, list[dict[str, Any]]] = {"baseline": [], "current": []}
            results["log"] = write_log(base / "log", events, customers)
            for n in range(rounds):
                for name, tree in trees.items():
                    history[name].append(_run(tree, _HISTORY, json.dumps(list(LENGTHS))))
                    runner[name].append(_runner(tree, base / "log" / "log.sqlite", base, f"{name}-{n}"))
            results["history"] = {name: _best_history(rows) for name, rows in history.items()}
            results["runner"] = {name: max(rows, key=lambda r: r["events_per_second"]) for name, rows in runner.items()}
            if kafka:
                results["worker"] = _workers(trees, base / "kafka", kafka_events, rounds)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    results["load_average_after"] = os.getloadavg()
    return results


def _best_history(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per mix and length: the lowest cost seen (noise only ever adds), the bytes (exact)."""
    out: dict[str, Any] = {}
    for mix in rows[0]:
        out[mix] = {n: {"us_per_event": min(r[mix][n]["us_per_event"] for r in rows),
                        "state_bytes": rows[0][mix][n]["state_bytes"]} for n in rows[0][mix]}
    return out


def _workers(trees: dict[str, Path], base: Path, n: int, rounds: int) -> dict[str, Any]:
    import asyncio

    from services.scaleout.kafka.topics import TOUCHPOINTS_TOPIC
    from tools.bench.kafka import preload, touchpoint_records
    from tools.bench.kafka_worker import worker_throughput
    from tools.tansu import TansuBroker

    partitions = 4
    records = touchpoint_records(n, max(100, n // 5))
    measured: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    base.mkdir(parents=True, exist_ok=True)
    with TansuBroker(directory=base) as broker:
        asyncio.run(preload(broker.bootstrap, TOUCHPOINTS_TOPIC, records, partitions))
        for k in range(rounds):
            for name, tree in trees.items():
                measured[name].append(worker_throughput(broker.bootstrap, len(records), partitions,
                                                        base / f"{name}-{k}", tree=tree))
    return {name: max(rows, key=lambda r: r["events_per_second"] or 0) for name, rows in measured.items()}


def _head() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                          check=False)
    return done.stdout.strip() or "?"


def render(results: dict[str, Any]) -> Iterator[str]:
    yield f"baseline {results['baseline']} vs current {results['current']}"
    for mix in ("emails", "mixed"):
        yield f"history length ({mix}): events | baseline µs/event, bytes | current µs/event, bytes"
        old, new = results["history"]["baseline"][mix], results["history"]["current"][mix]
        for n in old:
            yield (f"  {int(n):>6} | {old[n]['us_per_event']:>8} {old[n]['state_bytes']:>8} "
                   f"| {new[n]['us_per_event']:>8} {new[n]['state_bytes']:>8}")
    for what in ("runner", "worker"):
        if what in results:
            old, new = results[what]["baseline"], results[what]["current"]
            ratio = new["events_per_second"] / old["events_per_second"] if old["events_per_second"] else None
            yield (f"{what}: baseline {old['events_per_second']} ev/s, current {new['events_per_second']} ev/s"
                   + (f" (x{ratio:.2f})" if ratio else ""))


if __name__ == "__main__":  # python -m tools.bench.decider [--kafka]
    figures = run_decider_bench(kafka="--kafka" in sys.argv)
    print(json.dumps(figures, indent=2))
    for line in render(figures):
        print(line)
