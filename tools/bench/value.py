"""Customer-value benchmarks (docs/BENCHMARKS.md): what keeping the portfolio's RFM cells
and the segments adds to the embedded fold (same run, same log, the fold without them as
the baseline),
and a BG/NBD refit of a million customers, purchases to parameters."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from projections.batch import FoldConfig
from projections.segments.membership import SegmentSet
from services.embedded.eventlog import TouchpointLog
from services.embedded.runner import ProjectionRunner
from services.embedded.storage.unit import ViewStore
from services.gc_tuning import tune_gc
from services.segments.file import load_segments
from services.settings import SEGMENTS_FILE
from services.value.bgnbd import fit
from services.value.summary import DAY_US, distinct_rows, summarise

__all__ = ["rfm_overhead", "purchases_drawn_from_the_model", "refit_customers", "TRUE_PARAMETERS"]

TRUE_PARAMETERS = (0.25, 4.0, 0.8, 2.5)  # r, alpha (weeks), a, b
START = 1_600_000_000_000_000


def _fold_seconds(log: TouchpointLog, currency: str | None, segments: SegmentSet | None = None) -> tuple[float, float]:
    """(wall-clock, CPU) seconds of the fold: CPU time is what the fold itself costs when
    other processes share the machine (the fold is one thread)."""
    with tempfile.TemporaryDirectory() as scratch:
        store = ViewStore(Path(scratch) / "views.sqlite")
        runner = ProjectionRunner(log, store, FoldConfig(currency=currency, segments=segments), batch=2000)
        started, cpu = time.perf_counter(), time.process_time()
        runner.catch_up()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        store.datastore.close()
    return seconds, cpu


def rfm_overhead(log_directory: Path) -> dict[str, Any]:
    """The runner over a written log without customer value, with the RFM cells only, and
    with the RFM cells and the default segments (the 'with' side), alternated, best of
    two: what keeping RFM, value and segments live adds to the fold."""
    tune_gc()
    log = TouchpointLog(log_directory / "log.sqlite")
    segments = load_segments(SEGMENTS_FILE)
    events = log.head()
    without, rfm_only, with_ = [], [], []
    for _ in range(2):
        without.append(_fold_seconds(log, None))
        rfm_only.append(_fold_seconds(log, "EUR"))
        with_.append(_fold_seconds(log, "EUR", segments))
    base, rfm, cost = (min(w for w, _ in runs) for runs in (without, rfm_only, with_))
    return {"events": events, "segments": len(segments.segments), "us_per_event_without": round(base / events * 1e6, 2),
            "us_per_event_rfm_only": round(rfm / events * 1e6, 2), "us_per_event_with": round(cost / events * 1e6, 2),
            "overhead_percent": round((cost / base - 1) * 100, 1),
            "cpu_overhead_percent": round((min(c for _, c in with_) / min(c for _, c in without) - 1) * 100, 1)}


def purchases_drawn_from_the_model(customers: int, seed: int = 12) -> tuple[np.ndarray, np.ndarray, int]:
    """One row per purchase (customer index, instant µs), customers acquired over three
    years buying as BG/NBD assumes with ``TRUE_PARAMETERS``; and the end of observation.

    Alive, a customer would make n ~ Poisson(λ · age) repeat purchases at uniform times;
    they drop out after the J-th, so the first min(n, J) of those times are real."""
    r, alpha, a, b = TRUE_PARAMETERS
    rng = np.random.default_rng(seed)
    lam, p = rng.gamma(r, 1 / alpha, customers), rng.beta(a, b, customers)
    first = START + rng.integers(0, 3 * 365, customers) * DAY_US
    end = START + 3 * 365 * DAY_US
    would = rng.poisson(lam * (end - first) / (7 * DAY_US))
    made = np.minimum(would, rng.geometric(p))
    owner = np.repeat(np.arange(customers), would)
    when = first[owner] + (rng.random(owner.size) * (end - first[owner])).astype(np.int64)
    order = np.lexsort((when, owner))
    owner, when = owner[order], when[order]
    rank = np.arange(owner.size) - np.repeat(np.cumsum(would) - would, would)
    real = rank < made[owner]
    return np.r_[np.arange(customers), owner[real]], np.r_[first, when[real]], end


def refit_customers(customers: int = 1_000_000) -> dict[str, Any]:
    """Purchases to parameters for ``customers`` drawn from the model."""
    owners, at, end = purchases_drawn_from_the_model(customers)
    started = time.perf_counter()
    summaries = summarise(owners, at, end)
    rows = distinct_rows(summaries.x, summaries.t_x, summaries.T)
    model = fit(*rows[:3], weights=rows[3])
    seconds = time.perf_counter() - started
    return {"customers": model.customers, "purchases": int(owners.size), "distinct_rows": int(rows[0].size),
            "seconds": round(seconds, 2), "converged": model.converged,
            "parameters": [round(v, 3) for v in (model.r, model.alpha, model.a, model.b)],
            "true_parameters": list(TRUE_PARAMETERS)}
