"""Benchmark path (c): the real view worker, end to end, as its own process.

``worker_throughput`` starts ``touchstream worker`` (the production entry point: faust
host, batched consumer, Redis commits, derived events) on a topic preloaded with ``n``
records and a private Redis, and measures from the first batch committed to the last
record's position: events per second of wall time and per CPU second of the worker
process (from /proc, so it counts everything the process did). The states it committed
are digested for the harness's cross-check against the other paths.

``ack_to_view_latency`` measures what a call centre sees: touchpoints posted through the
scale-out ingest (``KafkaPlatform.append``: identity, broker acknowledgement, positions)
at a steady rate, and for each the time from the acknowledgement to the position being
visible in Redis (the read-your-writes watermark), with a worker running.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis

from services.scaleout.kafka.topics import TOUCHPOINTS_TOPIC
from services.scaleout.redis.keys import RedisKeys
from services.scaleout.worker.replay import live_states, states_digest
from services.settings import Settings
from tools.bench.server import free_port
from tools.redis_server import RedisServer

__all__ = ["worker_throughput", "ack_to_view_latency", "worker_environment"]

REPO = Path(__file__).resolve().parents[2]
TANSU_TUNING = {"TOUCHSTREAM_KAFKA_FETCH_MAX_WAIT_MS": "10", "TOUCHSTREAM_KAFKA_SESSION_TIMEOUT_SECONDS": "6",
                "TOUCHSTREAM_KAFKA_HEARTBEAT_SECONDS": "0.5"}


def worker_environment(bootstrap: str, redis_url: str, prefix: str, partitions: int, workdir: Path) -> dict[str, str]:
    return {**os.environ, **TANSU_TUNING, "TOUCHSTREAM_RUNTIME": "kafka", "TOUCHSTREAM_KAFKA_BOOTSTRAP": bootstrap,
            "TOUCHSTREAM_REDIS_URL": redis_url, "TOUCHSTREAM_REDIS_PREFIX": prefix,
            "TOUCHSTREAM_KAFKA_PARTITIONS": str(partitions), "TOUCHSTREAM_WORKER_GROUP": f"bench-{prefix}",
            "TOUCHSTREAM_WORKER_WEB_PORT": str(free_port()), "TOUCHSTREAM_DATA_DIR": str(workdir),
            "TOUCHSTREAM_LOG_LEVEL": "warning",
            # the view fold, as the naive pipeline and the ceiling fold it: no contact rules
            # (their cost is measured on its own, tools/bench/nbc.py)
            "TOUCHSTREAM_RULES_FILE": ""}


def _untagged_states(client: redis.Redis, prefix: str) -> dict[str, bytes]:
    """Stored states under the key layout before hash tags (`<prefix>:state:<customer>`)."""
    start = f"{prefix}:state:"
    names = list(client.scan_iter(match=start + "*", count=2000))
    out: dict[str, bytes] = {}
    for i in range(0, len(names), 1000):
        chunk = names[i:i + 1000]
        out.update((n.decode()[len(start):], v) for n, v in zip(chunk, client.mget(chunk), strict=True)
                   if isinstance(v, bytes))
    return out


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _start_worker(environment: dict[str, str], workdir: Path,
                  tree: Path | None = None) -> tuple[subprocess.Popen[bytes], Any]:
    """``tree``: another checkout of the code to run (a baseline revision), else this one."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = (workdir / "worker.log").open("wb")
    if tree is not None:
        environment = {**environment, "PYTHONPATH": str(tree)}
    process = subprocess.Popen([sys.executable, "-m", "services.cli", "worker"], cwd=tree or REPO, env=environment,
                               stdout=log, stderr=subprocess.STDOUT)
    return process, log


def _wait_ready(port: str, process: subprocess.Popen[bytes], workdir: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the worker exited ({process.returncode}): {_tail(workdir)}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"the worker was not ready in {timeout} s: {_tail(workdir)}")


def _tail(workdir: Path) -> str:
    return (workdir / "worker.log").read_text(errors="replace")[-2000:]


def _stop(process: subprocess.Popen[bytes], log: Any) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    log.close()


def worker_throughput(bootstrap: str, n: int, partitions: int, workdir: Path,
                      timeout: float = 600.0, tree: Path | None = None) -> dict[str, Any]:
    """Fold the ``n`` records on the touchpoints topic with ``touchstream worker`` (of
    ``tree``, another checkout, when given)."""
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    keys = RedisKeys(prefix, partitions)
    with RedisServer() as server:
        environment = worker_environment(bootstrap, server.url, prefix, partitions, workdir)
        client = redis.Redis.from_url(server.url)
        # a baseline revision may keep the layout before hash tags (`<prefix>:pos:<topic>:<p>`)
        position_keys = [(keys.position(TOUCHPOINTS_TOPIC, p), f"{prefix}:pos:{TOUCHPOINTS_TOPIC}:{p}")
                         for p in range(partitions)]
        process, log = _start_worker(environment, workdir, tree)
        try:
            started = time.monotonic()
            first: tuple[float, float, int] | None = None
            done = 0
            while done < n:
                if process.poll() is not None:
                    raise RuntimeError(f"the worker exited ({process.returncode}): {_tail(workdir)}")
                if time.monotonic() - started > timeout:
                    raise TimeoutError(f"the worker folded {done} of {n} records in {timeout} s")
                done = sum(int(v) + 1 for v in (client.get(now) or client.get(before) for now, before in position_keys)
                           if v is not None)
                if done and first is None:  # the span starts at the first committed batch
                    first = (time.perf_counter(), _cpu_seconds(process.pid), done)
                time.sleep(0.005)
            assert first is not None
            wall, cpu = time.perf_counter() - first[0], _cpu_seconds(process.pid) - first[1]
            counted = n - first[2]  # the records committed after the span began
            measured = {"events": n, "seconds": round(wall, 3), "cpu_seconds": round(cpu, 3),
                        "events_per_second": round(counted / wall) if wall else None,
                        "events_per_cpu_second": round(counted / cpu) if cpu else None}
        finally:
            _stop(process, log)
        states, _ = asyncio.run(live_states(server.url, prefix, partitions))
        if not states:  # a baseline revision's layout, before hash tags
            states = _untagged_states(client, prefix)
        client.close()

    return {**measured, "customers": len(states), "digest": states_digest(states)}


async def _latency(bootstrap: str, redis_url: str, prefix: str, partitions: int, rate: int,
                   seconds: float) -> dict[str, Any]:
    from services.scaleout.platform import KafkaPlatform
    from tools.traffic import TrafficOptions, generate

    settings = Settings(runtime="kafka", kafka_bootstrap=bootstrap, redis_url=redis_url, redis_prefix=prefix,
                        kafka_partitions=partitions, kafka_fetch_max_wait_ms=10)
    platform = KafkaPlatform(settings)
    await platform.start()
    total = int(rate * seconds)
    documents = list(generate(TrafficOptions(seed=5, customers=max(50, total // 10), events=total,
                                             duplicate_rate=0.0)))
    tick, per_tick = 0.01, max(1, rate // 100)  # every 10 ms, rate/100 events
    pending: dict[int, float] = {}
    latencies: list[float] = []
    sending = True

    async def watch() -> None:
        while sending or pending:
            _, mark = await platform.store.watermark(TOUCHPOINTS_TOPIC, partitions)
            now = time.perf_counter()
            for position in [p for p in pending if p <= mark]:
                latencies.append(now - pending.pop(position))
            await asyncio.sleep(0.001)

    watcher = asyncio.create_task(watch())
    began = time.perf_counter()
    from datetime import UTC, datetime

    for i in range(0, total, per_tick):
        batch = documents[i:i + per_tick]
        stamp = datetime.now(UTC).isoformat()
        for document in batch:
            document["received_at"] = stamp
        answers = await platform.append(batch)
        acked = time.perf_counter()
        for position, duplicate in answers:
            if not duplicate:
                pending[position] = acked
        next_tick = began + (i // per_tick + 1) * tick
        await asyncio.sleep(max(0.0, next_tick - time.perf_counter()))
    sending = False
    await asyncio.wait_for(watcher, timeout=60)
    await platform.close()
    latencies.sort()

    def pct(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 1)

    return {"events": len(latencies), "rate": rate, "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": pct(1.0)}


def ack_to_view_latency(bootstrap: str, partitions: int, workdir: Path, *, rate: int = 1000,
                        seconds: float = 10.0) -> dict[str, Any]:
    """p50/p99 from the broker's acknowledgement of an ingest to the view visible in Redis."""
    prefix = f"lat{uuid.uuid4().hex[:8]}"
    with RedisServer() as server:
        environment = worker_environment(bootstrap, server.url, prefix, partitions, workdir)
        process, log = _start_worker(environment, workdir)
        try:
            _wait_ready(environment["TOUCHSTREAM_WORKER_WEB_PORT"], process, workdir)
            return asyncio.run(_latency(bootstrap, server.url, prefix, partitions, rate, seconds))
        finally:
            _stop(process, log)


if __name__ == "__main__":  # a quick look: python -m tools.bench.kafka_worker
    from tools.tansu import TansuBroker

    with TansuBroker() as broker:
        print(orjson.dumps(ack_to_view_latency(broker.bootstrap, 4, Path("/tmp/touchstream-latency")),
                           option=orjson.OPT_INDENT_2).decode())
