"""Benchmarks of the embedded projection at scale, each stage in its own process so its
memory is its own: write a log of N events over C customers, fold it with the runner
(throughput, peak RSS), rebuild it with ``touchstream replay``."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["write_log", "fold_log", "replay_log"]


def _write(directory: str, events: int, customers: int, out: Any) -> None:
    from services.api.contracts import TOUCHPOINT_ADAPTER, to_canonical
    from services.embedded.eventlog import TouchpointLog
    from tools.traffic import TrafficOptions, generate

    log, batch, received = TouchpointLog(Path(directory) / "log.sqlite"), [], datetime.now(UTC)
    started = time.perf_counter()
    for raw in generate(TrafficOptions(customers=customers, events=events, seed=21, duplicate_rate=0.0)):
        batch.append(to_canonical(TOUCHPOINT_ADAPTER.validate_python(raw), received))
        if len(batch) == 5000:
            log.append(batch)
            batch = []
    if batch:
        log.append(batch)
    out.put({"events": log.head(), "seconds": round(time.perf_counter() - started, 1)})


def _fold(directory: str, out: Any) -> None:
    from services.embedded.eventlog import TouchpointLog
    from services.embedded.runner import ProjectionRunner
    from services.embedded.storage.unit import ViewStore
    from services.gc_tuning import tune_gc
    from services.settings import Settings

    tune_gc()
    log = TouchpointLog(Path(directory) / "log.sqlite")
    store = ViewStore(Path(directory) / "views.sqlite")
    settings = Settings(data_dir=Path(directory))
    # folded as the platform folds (stages, RFM cells, the default rules), so the replay
    # that follows compares like with like
    runner = ProjectionRunner(log, store, settings.fold_config(), batch=2000)
    started = time.perf_counter()
    runner.catch_up()
    seconds = time.perf_counter() - started
    status = Path("/proc/self/status").read_text()
    peak_kib = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))
    out.put({"events": runner.position, "customers": store.customers.count(), "seconds": round(seconds, 2),
             "events_per_second": round(runner.position / seconds), "us_per_event": round(seconds / runner.position * 1e6, 1),
             "peak_rss_mib": round(peak_kib / 1024)})


def _in_child(target: Any, *args: Any) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    process = context.Process(target=target, args=(*args, out))
    process.start()
    try:
        result = out.get(timeout=3600)  # the largest stage takes minutes; a dead child must not hang the bench
    finally:
        process.join(timeout=60)
    return result


def write_log(directory: Path, events: int, customers: int) -> dict[str, Any]:
    directory.mkdir(parents=True, exist_ok=True)
    return _in_child(_write, str(directory), events, customers)


def fold_log(directory: Path) -> dict[str, Any]:
    return _in_child(_fold, str(directory))


def replay_log(directory: Path) -> dict[str, Any]:
    """``touchstream replay`` as a user runs it; its own report (digests must agree)."""
    env = {**os.environ, "TOUCHSTREAM_DATA_DIR": str(directory)}
    done = subprocess.run([sys.executable, "-m", "services.cli", "replay"], env=env, capture_output=True, text=True,
                          check=False, cwd=Path(__file__).resolve().parents[2])
    report = json.loads(done.stdout)
    report["exit_code"] = done.returncode
    return report
