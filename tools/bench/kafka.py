"""The scale-out benchmark: the view worker beside a naive faust pipeline and the ceiling.

One run, one machine, one private Tansu broker (``tools.tansu``), one topic
preloaded with N touchpoint records built exactly as ingest builds them (generated
traffic, identity resolved with ``projections.identity.resolve`` over an index held in
a dict, records from ``TouchpointPublisher._record``: key = customer id, Avro value,
CloudEvents and resolution headers). Then, each from a fresh consumer group reading the
same records from the start, in its own process:

(a) ``naive_faust``: the textbook faust pipeline, one Table read and write per event
    (``tools.bench.naive_faust``);
(b) ``ceiling``: a raw aiokafka consumer that decodes and folds every record into views
    held in memory and writes nothing: what decoding + the core cost alone;
(c) ``worker``: the view worker end to end (``touchstream worker``, tools/bench/kafka_worker.py).

Each rate is taken from the first event folded to the N-th (group joins excluded). (a)
and (b) also give a digest of every customer's folded state (``states_digest``): the
same records must give the same digest, whichever path folded them.
Goals (docs/BENCHMARKS.md): (c) ≥ 8,000 ev/s per worker process, ≥ 3× (a), ≥ 40% of (b).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import platform
import queue
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rich.console import Console
from rich.table import Table

from projections.codec import from_dict
from projections.identity import Identifier, resolve, settled
from projections.view.document import to_state
from projections.view.fold import CustomerView, evolve, initial_view
from services.api.contracts import TOUCHPOINT_ADAPTER, to_canonical
from services.gc_tuning import tune_gc
from services.scaleout.kafka.publisher import TouchpointPublisher
from services.scaleout.kafka.records import BadRecord, read_touchpoint
from services.scaleout.kafka.topics import TOUCHPOINTS_TOPIC, ensure_topics
from services.scaleout.worker.replay import states_digest
from tools.tansu import TansuBroker
from tools.traffic import TrafficOptions, generate

__all__ = ["KafkaScale", "KAFKA_SCALES", "states_digest", "touchpoint_records", "preload", "ceiling",
           "naive_faust", "worker_rate", "run_kafka_bench", "print_kafka_report"]

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class KafkaScale:
    events: int
    customers: int
    partitions: int = 8
    latency_seconds: float = 20.0  # at 1,000 events/s


KAFKA_SCALES = {"full": KafkaScale(100_000, 20_000), "quick": KafkaScale(2_000, 400, latency_seconds=3.0)}

# The consumers' settings on Tansu (docs/SCALE_OUT.md): a short fetch wait, joins in ~3 s.
BENCH_KAFKA = {"kafka_fetch_max_wait_ms": 10, "kafka_session_timeout_seconds": 6.0, "kafka_heartbeat_seconds": 0.5}


def worker_rate(broker: str, topic: str, n: int, partitions: int, workdir: Path) -> Mapping[str, Any]:
    """(c), the view worker end to end (``touchstream worker`` in its own process, a
    private Redis): events/s from its first committed batch to the n-th record, and the
    digest of the states it stored (tools/bench/kafka_worker.py)."""
    from tools.bench.kafka_worker import worker_throughput

    if topic != TOUCHPOINTS_TOPIC:
        raise ValueError(f"the worker reads {TOUCHPOINTS_TOPIC}, not {topic}")
    return worker_throughput(broker, n, partitions, workdir)


def clock() -> tuple[float, float]:
    """Now, as (wall, this process's CPU) seconds: the start of a measured span."""
    return time.perf_counter(), time.process_time()


def rates(events: int, since: tuple[float, float]) -> dict[str, Any]:
    """Events per wall second and per CPU second of this process since ``since``. On a
    machine shared with other work the CPU figure is the steadier one."""
    wall, cpu = time.perf_counter() - since[0], time.process_time() - since[1]
    return {"events": events, "seconds": round(wall, 3), "cpu_seconds": round(cpu, 3),
            "events_per_second": round(events / wall), "events_per_cpu_second": round(events / cpu)}


def touchpoint_records(events: int, customers: int, seed: int = 11) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    """(key, value, headers) of ``events`` generated touchpoints, as ingest publishes them."""
    received, records = datetime.now(UTC), []
    known: dict[Identifier, str] = {}  # the identifier index, as ingest keeps it in Redis
    for raw in generate(TrafficOptions(customers=customers, events=events, seed=seed, duplicate_rate=0.0)):
        document = to_canonical(TOUCHPOINT_ADAPTER.validate_python(raw), received)
        decided = resolve(from_dict(document), known)
        known.update(dict.fromkeys(decided.links, decided.customer_id))
        records.append(TouchpointPublisher._record(document, (decided.customer_id, decided.conflicts)))
    return records


async def preload(bootstrap: str, topic: str, records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]],
                  partitions: int) -> dict[str, Any]:
    """Create ``topic`` and write the records in big batches; returns when all are acknowledged."""
    await ensure_topics(bootstrap, partitions, [topic])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                                max_batch_size=1024 * 1024, max_request_size=8 * 1024 * 1024)
    await producer.start()
    started, acked = time.perf_counter(), 0
    try:
        for i in range(0, len(records), 20_000):  # bounded number of futures in flight
            sends = [await producer.send(topic, value=value, key=key, headers=headers)
                     for key, value, headers in records[i:i + 20_000]]
            acked += len(await asyncio.gather(*sends))
    finally:
        await producer.stop()
    seconds = time.perf_counter() - started
    return {"events": acked, "seconds": round(seconds, 2), "events_per_second": round(acked / seconds)}


# -- (b) the ceiling ---------------------------------------------------------------------
def _ceiling_child(bootstrap: str, topic: str, n: int, fetch_wait_ms: int, out: Any) -> None:
    tune_gc()
    out.put(asyncio.run(_ceiling(bootstrap, topic, n, fetch_wait_ms)))


async def _ceiling(bootstrap: str, topic: str, n: int, fetch_wait_ms: int) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"bench-ceiling-{uuid.uuid4().hex[:8]}",
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_wait_ms=fetch_wait_ms, max_partition_fetch_bytes=4 * 1024 * 1024,
                                session_timeout_ms=int(BENCH_KAFKA["kafka_session_timeout_seconds"] * 1000),
                                heartbeat_interval_ms=int(BENCH_KAFKA["kafka_heartbeat_seconds"] * 1000))
    await consumer.start()
    views: dict[str, CustomerView] = {}
    folded = dead = 0
    first: tuple[float, float] | None = None
    try:
        while folded < n:
            polled = await consumer.getmany(timeout_ms=200, max_records=10_000)
            if polled and first is None:
                first = clock()
            for records in polled.values():
                for record in records:
                    try:
                        read = read_touchpoint(record.value, record.key, record.headers)
                    except BadRecord:
                        dead += 1
                    else:
                        view = views.get(read.customer_id) or initial_view(read.customer_id)
                        views[read.customer_id] = evolve(view, settled(read.event, read.customer_id,
                                                                       read.conflicts).folded)
                    folded += 1
        measured = rates(folded, first or clock())
    finally:
        await consumer.stop()
    states = {c: orjson.dumps(to_state(v)) for c, v in views.items()}
    return {**measured, "dead": dead, "customers": len(states), "digest": states_digest(states)}


def ceiling(bootstrap: str, topic: str, n: int, fetch_wait_ms: int = int(BENCH_KAFKA["kafka_fetch_max_wait_ms"]),
            timeout: float | None = None) -> dict[str, Any]:
    """(b): a raw aiokafka consumer folding the n records in memory, in its own process."""
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    process = context.Process(target=_ceiling_child, args=(bootstrap, topic, n, fetch_wait_ms, out))
    process.start()
    deadline = time.monotonic() + (timeout or _budget(n))
    try:
        while True:
            try:
                return out.get(timeout=0.5)
            except queue.Empty:
                if not process.is_alive():
                    raise RuntimeError(f"the ceiling's process exited with {process.exitcode}") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the ceiling did not fold {n} events in time") from None
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()


# -- (a) the naive faust pipeline --------------------------------------------------------
def naive_faust(bootstrap: str, topic: str, n: int, workdir: Path, partitions: int,
                timeout: float | None = None) -> dict[str, Any]:
    """(a): ``tools.bench.naive_faust`` as a faust worker process; its report."""
    workdir.mkdir(parents=True, exist_ok=True)
    result, log_path = workdir / "result.json", workdir / "faust.log"
    env = {**os.environ, **_settings_env(bootstrap, partitions)}
    command = [sys.executable, "-m", "tools.bench.naive_faust", "--events", str(n), "--topic", topic,
               "--result", str(result), "--datadir", str(workdir / "faust")]
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + (timeout or _budget(n))
    try:
        while not result.exists():
            if process.poll() is not None:
                raise RuntimeError(f"naive faust worker exited with {process.returncode}: {_tail(log_path)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"naive faust worker did not fold {n} events in time: {_tail(log_path)}")
            time.sleep(0.05)
        report: dict[str, Any] = orjson.loads(result.read_bytes())
    finally:
        _end(process)  # it stops itself once done; this bounds the wait
    report["exit_code"] = process.returncode
    return report


def _settings_env(bootstrap: str, partitions: int) -> dict[str, str]:
    values = {"kafka_bootstrap": bootstrap, "kafka_partitions": partitions, **BENCH_KAFKA}
    return {f"TOUCHSTREAM_{k.upper()}": str(v) for k, v in values.items()}


def _end(process: subprocess.Popen[bytes]) -> None:
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _tail(path: Path, size: int = 3000) -> str:
    return path.read_text(errors="replace")[-size:] if path.exists() else "(no log)"


def _budget(n: int) -> float:
    return 120 + n / 200  # seconds: generous at 200 ev/s, so only a hang times out


# -- the run -----------------------------------------------------------------------------
def run_kafka_bench(scale_name: str = "full", workdir: Path | None = None, *,
                    records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]] | None = None) -> dict[str, Any]:
    """Every path over the same preloaded topic; the figures, ratios and goals as a dict.
    ``records`` replaces the scale's generated traffic (``touchpoint_records``)."""
    scale = KAFKA_SCALES[scale_name]
    base = Path(workdir or tempfile.mkdtemp(prefix="touchstream-kafka-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    records = records if records is not None else touchpoint_records(scale.events, scale.customers)
    n = len(records)
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "scale": scale_name, "events": n,
        "customers": len({key for key, _, _ in records}), "partitions": scale.partitions,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average": os.getloadavg()},  # the machine may be shared: say how busy it was
        "generate_seconds": round(time.perf_counter() - started, 2),
    }
    with TansuBroker(directory=base) as broker:
        topic = TOUCHPOINTS_TOPIC
        results["preload"] = asyncio.run(preload(broker.bootstrap, topic, records, scale.partitions))
        del records
        results["ceiling"] = ceiling(broker.bootstrap, topic, n)
        results["naive_faust"] = naive_faust(broker.bootstrap, topic, n, base / "naive-faust", scale.partitions)
        results["worker"] = dict(worker_rate(broker.bootstrap, topic, n, scale.partitions, base / "worker"))
    (base / "latency").mkdir(exist_ok=True)
    with TansuBroker(directory=base / "latency") as broker:  # an empty topic: live traffic only
        from tools.bench.kafka_worker import ack_to_view_latency

        results["latency"] = ack_to_view_latency(broker.bootstrap, scale.partitions, base / "latency-worker",
                                                 seconds=scale.latency_seconds)
    from tools.bench.idle import idle_comparison

    results["idle"] = idle_comparison(base / "idle", seconds=30.0 if scale_name == "full" else 5.0)
    results["ratios"], results["goals"] = _ratios(results)
    return results


def _ratios(r: Mapping[str, Any]) -> tuple[dict[str, float | None], dict[str, bool | None]]:
    """Ratios per wall second (the goals) and per CPU second (steadier on a shared machine)."""
    worker = r["worker"] or {}
    ratios: dict[str, float | None] = {}
    for unit in ("events_per_second", "events_per_cpu_second"):
        naive, ceiling_rate, own = r["naive_faust"][unit], r["ceiling"][unit], worker.get(unit)
        suffix = "" if unit == "events_per_second" else "_cpu"
        ratios[f"ceiling_vs_naive{suffix}"] = round(ceiling_rate / naive, 2)
        ratios[f"worker_vs_naive{suffix}"] = round(own / naive, 2) if own else None
        ratios[f"worker_vs_ceiling{suffix}"] = round(own / ceiling_rate, 2) if own else None
    digests = {r["naive_faust"]["digest"], r["ceiling"]["digest"]} | ({worker["digest"]} if "digest" in worker else set())
    rate, vs_naive, vs_ceiling = worker.get("events_per_second"), ratios["worker_vs_naive"], ratios["worker_vs_ceiling"]
    goals = {
        "worker_at_least_8000": None if rate is None else rate >= 8000,
        "worker_at_least_3x_naive": None if vs_naive is None else vs_naive >= 3,
        "worker_at_least_40pct_ceiling": None if vs_ceiling is None else vs_ceiling >= 0.4,
        "same_states": len(digests) == 1,
        "latency_p99_at_most_100ms": r["latency"]["p99_ms"] <= 100 if r.get("latency") else None,
        "idle_broker_and_worker_under_3pct": all(r["idle"]["goal_under_3pct"].values()) if r.get("idle") else None,
    }
    return ratios, goals


def _rate(path: Mapping[str, Any]) -> str:
    cpu = path.get("events_per_cpu_second")
    return f"{path['events_per_second']:,} ev/s" + (f" ({cpu:,} per CPU-s)" if cpu else "")


def print_kafka_report(results: Mapping[str, Any], console: Console | None = None) -> None:
    r, console = results, console or Console()
    worker, ratios = r["worker"], r["ratios"]
    rows = [
        ("preload (batched producer, acks=all)", f"{r['preload']['events_per_second']:,} ev/s", "—"),
        ("(a) naive faust: one Table read + write per event", _rate(r["naive_faust"]), "—"),
        ("(b) ceiling: raw aiokafka, decode + fold, no writes",
         f"{_rate(r['ceiling'])}, ×{ratios['ceiling_vs_naive']} (a)", "—"),
        ("(c) view worker end to end", f"{_rate(worker)}, ×{ratios['worker_vs_naive']} (a), "
         f"{ratios['worker_vs_ceiling']:.0%} of (b)", "≥ 8,000 ev/s, ≥ 3× (a), ≥ 40% of (b)"),
        ("ingest ack → view visible in Redis, at 1,000 ev/s",
         f"p50 {r['latency']['p50_ms']} ms, p99 {r['latency']['p99_ms']} ms ({r['latency']['events']:,} events)",
         "p99 ≤ 100 ms"),
        ("same folded states on every path", str(r["goals"]["same_states"]), "True"),
    ]
    if r.get("idle"):
        idle = r["idle"]

        def cost(figures: Mapping[str, float]) -> str:
            return (", ".join(f"{name} {figures[name]:.1f}%" for name in ("broker", "worker", "api", "redis"))
                    + f"; then the first event's view in {figures['first_event_ms']:.0f} ms")

        rows += [(f"idle, % of a core over {idle['seconds']:g} s: adaptive fetch wait", cost(idle["adaptive_pct_core"]),
                  "broker, worker < 3%"),
                 ("idle, % of a core: fixed 10 ms fetch wait (baseline)", cost(idle["fixed_pct_core"]), "—")]
    load = ", ".join(f"{x:.1f}" for x in r["machine"]["load_average"])
    table = Table(title=f"Touchstream Kafka bench ({r['scale']}: {r['events']:,} events, {r['customers']:,} customers, "
                        f"{r['partitions']} partitions; {r['date']}, {r['machine']['cpus']} CPUs, load {load})")
    for column in ("figure", "measured", "goal"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)
