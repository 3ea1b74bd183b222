"""Customer-value benchmarks (docs/BENCHMARKS.md): what keeping the portfolio's RFM cells
and the segments adds to the embedded fold (same run, same log, the fold without them as
the baseline),
a refit of a million customers (BG/NBD, Gamma-Gamma, lifetime values), and the export of
every value card over HTTP."""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from projections.batch import FoldConfig
from projections.codec import format_instant
from projections.segments.membership import SegmentSet
from projections.view.state import instant_of
from services.embedded.eventlog import TouchpointLog
from services.embedded.runner import ProjectionRunner
from services.embedded.storage.unit import ViewStore
from services.gc_tuning import tune_gc
from services.segments.file import load_segments
from services.settings import SEGMENTS_FILE
from services.value.job import refit
from services.value.summary import DAY_US, summarise
from tools.bench.server import BENCH_KEY, LocalServer

__all__ = ["rfm_overhead", "purchases_drawn_from_the_model", "refit_customers", "export_cards", "TRUE_PARAMETERS"]

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


SPEND_PARAMETERS = (6.0, 4.0, 15.0)  # Gamma-Gamma p, q, v: a mean spend per purchase day of 30


def refit_customers(customers: int = 1_000_000, seed: int = 12) -> dict[str, Any]:
    """``services.value.job.refit`` (BG/NBD, Gamma-Gamma and every customer's discounted
    lifetime value) on ``customers`` drawn from the models: their histories to the figures."""
    owners, at, end = purchases_drawn_from_the_model(customers, seed)
    summary = summarise(owners, at, end)
    x = summary.x.astype(np.int64)
    p, q, v = SPEND_PARAMETERS
    rng = np.random.default_rng(seed + 1)
    scale = rng.gamma(q, 1 / v, x.size)  # each customer's spend rate, then their mean over x repeat days
    mean = np.where(x > 0, rng.gamma(np.maximum(p * x, 1e-9), 1 / np.maximum(scale * x, 1e-9)), np.nan)
    # the histories the stored states give (first and last purchase day, distinct days), from the summaries
    first = (end // DAY_US - np.rint(summary.T * 7).astype(np.int64)) * DAY_US
    last = first + np.rint(summary.t_x * 7).astype(np.int64) * DAY_US
    days = x + 1
    histories = [(int(f), int(la), int(d), None if np.isnan(m) else float(m))
                 for f, la, d, m in zip(first.tolist(), last.tolist(), days.tolist(), mean.tolist(), strict=True)]
    started = time.perf_counter()
    model = refit(histories, end)
    seconds = time.perf_counter() - started
    spend = model.spend
    return {"customers": model.customers, "purchases": int(owners.size), "seconds": round(seconds, 2),
            "converged": model.model.converged,
            "parameters": [round(v, 3) for v in (model.model.r, model.model.alpha, model.model.a, model.model.b)],
            "true_parameters": list(TRUE_PARAMETERS),
            "spend_parameters": None if spend is None else [round(v, 3) for v in (spend.p, spend.q, spend.v)],
            "true_spend_parameters": list(SPEND_PARAMETERS), "portfolio_lifetime_value": model.portfolio_clv}


def export_cards(directory: Path, copies: int = 5) -> dict[str, Any]:
    """Every value card streamed over HTTP (``GET /v1/value/cards``) by the embedded
    platform over a folded log's views, CSV (best of three) and JSONL (once, the whole
    cards: the same-run comparison), after a refit through the API. Each customer's stored
    state is copied ``copies − 1`` times under other ids first, so the large log's 200,000
    customers make a million cards (the copies change no figure the export computes)."""
    with LocalServer(directory, ready_seconds=600):  # its first start files the folded views into their segments
        pass
    with sqlite3.connect(directory / "views.sqlite") as c:
        originals = c.execute("SELECT count(*) FROM customer_views").fetchone()[0]
        end = c.execute("SELECT max(json_extract(CAST(state AS TEXT), '$.last_purchase_at')) "
                        "FROM customer_views").fetchone()[0]
        for k in range(1, copies):
            c.execute("INSERT OR IGNORE INTO customer_views SELECT customer_id || ?, state, position "
                      "FROM customer_views WHERE customer_id NOT LIKE '%~copy-%'", (f"~copy-{k}",))
        cards = c.execute("SELECT count(*) FROM customer_views").fetchone()[0]
    with sqlite3.connect(directory / "views.sqlite") as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the server opens a store, not gigabytes of WAL to replay
    at = format_instant(instant_of(end))
    with LocalServer(directory) as server:
        api = httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {BENCH_KEY}"}, timeout=600)
        fitted = api.post("/v1/value/refit", json={"observation_end": at})
        fitted.raise_for_status()
        csv_seconds = [_streamed(api, "csv", at, cards) for _ in range(3)]
        jsonl_seconds = _streamed(api, "jsonl", at, cards)
        status = Path(f"/proc/{server.pid}/status").read_text()
        peak_kib = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))
    best = min(csv_seconds)
    return {"cards": cards, "customers_folded": originals, "csv_seconds": round(best, 2),
            "csv_cards_per_second": round(cards / best), "csv_runs_cards_per_second": [round(cards / s) for s in csv_seconds],
            "jsonl_seconds": round(jsonl_seconds, 2), "jsonl_cards_per_second": round(cards / jsonl_seconds),
            "csv_vs_jsonl": round(jsonl_seconds / best, 2), "refit_seconds": fitted.json()["seconds"],
            "server_peak_rss_mib": round(peak_kib / 1024)}


def _streamed(api: httpx.Client, form: str, at: str, cards: int) -> float:
    """Seconds to stream every card in ``form``; checks one line per card came."""
    started, lines = time.perf_counter(), 0
    with api.stream("GET", "/v1/value/cards", params={"format": form, "at": at}) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            lines += chunk.count(b"\n")
    seconds = time.perf_counter() - started
    if lines != cards + (form == "csv"):  # the CSV header
        raise RuntimeError(f"{lines} lines exported for {cards} cards")
    return seconds
