"""Benchmarks through a real server on loopback: what call-centre software and web forms see.

* batched ingest → durable log → views updated (events/s until the views include the last);
* single-event durable ingest (requests/s, many concurrent senders);
* acknowledgement → visible in the view, at a steady 1,000 events/s (p50/p99);
* GET of a customer view (p50/p99).

The load comes from this process (aiohttp, C-accelerated) on the machine's other core.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import aiohttp
import orjson

from tools.bench.server import BENCH_KEY, LocalServer
from tools.traffic import TrafficOptions, generate, post_http

__all__ = ["batched_ingest", "single_event_ingest", "ack_to_visible", "view_reads", "percentile"]

HEADERS = {"Authorization": f"Bearer {BENCH_KEY}", "Content-Type": "application/json"}


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] if ordered else float("nan")


def _ms(samples: list[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(samples, 50) * 1000, 2), "p99_ms": round(percentile(samples, 99) * 1000, 2),
            "samples": len(samples)}


def batched_ingest(server: LocalServer, events: int, customers: int) -> dict[str, Any]:
    traffic = list(generate(TrafficOptions(customers=customers, events=events, seed=11, duplicate_rate=0.0)))
    started = time.monotonic()
    summary = post_http(traffic, server.base_url, BENCH_KEY, batch_size=500, concurrency=4, progress=False)
    acked = time.monotonic()
    visible = server.views_at(summary["last_position"])
    return {"events": len(traffic), "accepted": summary["accepted"],
            "acked_events_per_second": round(len(traffic) / (acked - started)),
            "events_per_second": round(len(traffic) / (visible - started))}


async def _single(base_url: str, bodies: list[bytes], concurrency: int) -> tuple[int, float]:
    queue = list(reversed(bodies))
    ok = 0

    async def sender(session: aiohttp.ClientSession) -> None:
        nonlocal ok
        while queue:
            async with session.post(base_url + "/v1/events", data=queue.pop(), headers=HEADERS) as response:
                await response.read()
                ok += response.status == 202

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(sender(session) for _ in range(concurrency)))
        return ok, time.perf_counter() - started


def single_event_ingest(server: LocalServer, requests: int, concurrency: int = 64) -> dict[str, Any]:
    traffic = generate(TrafficOptions(customers=max(100, requests // 10), events=requests, seed=12, duplicate_rate=0.0))
    bodies = [orjson.dumps({**e, "event_id": f"single-{e['event_id']}"}) for e in traffic]
    ok, seconds = asyncio.run(_single(server.base_url, bodies, concurrency))
    return {"requests": len(bodies), "accepted": ok, "concurrency": concurrency,
            "requests_per_second": round(len(bodies) / seconds)}


async def _paced(base_url: str, bodies: list[tuple[str, bytes]], rate: float) -> tuple[list[float], list[float]]:
    visible: list[float] = []
    acked: list[float] = []
    refused: list[int] = []

    async def one(session: aiohttp.ClientSession, customer: str, body: bytes, probe: bool) -> None:
        sent = time.perf_counter()
        async with session.post(base_url + "/v1/events", data=body, headers=HEADERS) as response:
            answer = await response.json()
        ack = time.perf_counter()
        if response.status != 202:
            refused.append(response.status)
            return
        position = answer["position"]
        acked.append(ack - sent)
        if not probe:
            return
        url = f"{base_url}/v1/customers/{customer}?min_position={position}"
        async with session.get(url, headers=HEADERS) as response:
            await response.read()
            if response.status == 200:
                visible.append(time.perf_counter() - ack)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:
        started, tasks = time.perf_counter(), []
        for n, (customer, body) in enumerate(bodies):
            delay = started + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, customer, body, n % PROBE_EVERY == 0)))
        await asyncio.gather(*tasks)
    if refused:
        raise RuntimeError(f"{len(refused)} paced events refused, e.g. HTTP {refused[0]}")
    return acked, visible


PROBE_EVERY = 10


def ack_to_visible(server: LocalServer, seconds: float, rate: float = 1000.0) -> dict[str, Any]:
    """Each event names its customer by id, so the view to read is known before sending.
    One event in ``PROBE_EVERY`` is followed by a read that waits for it (``min_position``),
    so the measurement adds 10% to the load rather than doubling it."""
    count = int(seconds * rate)
    traffic = generate(TrafficOptions(customers=2000, events=count, seed=13, duplicate_rate=0.0))
    bodies = []
    for n, event in enumerate(traffic):
        customer = f"paced-{n % 2000}"
        event = {**event, "event_id": f"paced-{n}", "customer": {"customer_id": customer}}
        bodies.append((customer, orjson.dumps(event)))
    acked, visible = asyncio.run(_paced(server.base_url, bodies, rate))
    probes = len(range(0, count, PROBE_EVERY))
    return {"rate_per_second": rate, "ack": _ms(acked), "ack_to_visible": _ms(visible), "missing": probes - len(visible)}


async def _reads(base_url: str, customers: list[str], concurrency: int) -> list[float]:
    samples: list[float] = []
    queue = list(customers)

    async def reader(session: aiohttp.ClientSession) -> None:
        while queue:
            started = time.perf_counter()
            async with session.get(f"{base_url}/v1/customers/{queue.pop()}", headers=HEADERS) as response:
                await response.read()
            samples.append(time.perf_counter() - started)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await asyncio.gather(*(reader(session) for _ in range(concurrency)))
    return samples


def view_reads(server: LocalServer, reads: int, concurrency: int = 4) -> dict[str, Any]:
    customers = [f"paced-{random.Random(n).randrange(2000)}" for n in range(reads)]
    return {"concurrency": concurrency, **_ms(asyncio.run(_reads(server.base_url, customers, concurrency)))}


