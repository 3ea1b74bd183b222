"""``touchstream worker``: the faust-streaming application hosting the view worker.

faust owns the process: start-up and shutdown order, signal handling (SIGTERM/SIGINT
stop the service gracefully: ``/readyz`` answers 503 from the signal on, the fold goes
on for ``worker_shutdown_delay_seconds``, then the batch in flight commits or is
dropped, never half written, and the worker leaves the group), supervision of the fold
service (``mode.Service``; a crash restarts it), the web server with ``/healthz``,
``/readyz`` and ``/metrics`` (Prometheus), and a timer refreshing lag gauges. The
touchpoint fold itself runs as a raw aiokafka consumer inside that service
(``services.scaleout.worker.consumer``), batch by batch: faust's per-message agent path costs
hundreds of microseconds per event (measured: ~2.4k events/s with a Table) and its
offset commits race in-flight messages (faust issue #606), while the batched path folds
a whole poll with one Redis read and one fenced write per partition.
docs/ARCHITECTURE.md has the measurements and the trade-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

import faust
import mode
import orjson
import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.gc_tuning import tune_gc
from services.logging import quiet_payload_loggers, stdlib_config
from services.scaleout.kafka.faust_transport import make_app
from services.scaleout.kafka.topics import TopicCreationFailed, ensure_topics
from services.scaleout.worker.consumer import ViewWorker
from services.settings import Settings

__all__ = ["DrainingWorker", "create_worker_app", "run_worker"]

log = structlog.get_logger("touchstream.worker")


def create_worker_app(settings: Settings) -> tuple[faust.App, ViewWorker]:
    # make_app: our fetch wait, Tansu-safe producer settings, and no environment reads.
    # The leader topic stays on: it is the one topic faust's own consumer subscribes to
    # here (the hot path has its own consumer), and aiokafka refuses to subscribe to none.
    # Nothing waits on that topic, so faust's consumer fetches with the idle wait: with the
    # busy one it cost an idle worker and the broker ~5% of a core each (docs/BENCHMARKS.md).
    app = make_app(f"{settings.worker_group}-host", settings, datadir=settings.data_dir / "faust",
                   topic_disable_leader=False,
                   consumer_fetch_max_wait_ms=max(settings.kafka_fetch_max_wait_ms, settings.kafka_idle_fetch_wait_ms))
    worker = ViewWorker(settings)

    @app.service
    class FoldService(mode.Service):
        """Runs the batched fold; faust starts it after the app and stops it first."""

        async def on_start(self) -> None:
            quiet_payload_loggers()  # again: faust configured logging after our start-up
            tune_gc()
            try:
                await ensure_topics(settings.kafka_bootstrap, settings.kafka_partitions,
                                    touchpoints=settings.kafka_touchpoints_topic,
                                    replication_factor=settings.kafka_replication_factor,
                                    request_timeout_ms=settings.kafka_request_timeout_ms)
            except TopicCreationFailed as error:  # the broker may come later: the consumer waits
                log.warning("topics_not_ensured", detail=str(error)[:300])
            await worker.start()
            log.info("worker_started", group=settings.worker_group, batch=settings.worker_batch_events)

        @mode.Service.task
        async def _fold(self) -> None:
            await worker.run()

        async def on_stop(self) -> None:
            await worker.stop()
            log.info("worker_stopped", **worker.status())

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok", "runtime": "kafka", "role": "worker"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        status = worker.status()
        if status["draining"]:  # stopping: the store may be closed already, no need to ask it
            return web.bytes(orjson.dumps({"ready": False, **status}), content_type="application/json", status=503)
        try:
            redis_ok = await worker.store.ping()
        except Exception:  # noqa: BLE001 - reported as not ready
            redis_ok = False
        ready = status["joined"] and redis_ok and status["stalled"] is None
        body = {"ready": ready, "redis": "ok" if redis_ok else "failing", **status}
        return web.bytes(orjson.dumps(body), content_type="application/json", status=200 if ready else 503)

    @app.page("/metrics")
    async def prometheus(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    return app, worker


class DrainingWorker(faust.Worker):
    """faust's worker, not ready from the first signal, stopping after a delay (as the
    API's ``DrainingServer``): the view worker is marked draining when mode's signal
    handler runs, before any service stops, so ``/readyz`` answers 503 from then until
    exit; a second signal during the delay ends the delay at once."""

    def __init__(self, app: faust.App, view_worker: ViewWorker, delay_seconds: float, **options: Any):
        super().__init__(app, **options)
        # faust's progress spinner writes terminal escape codes to the log even when it is a
        # file: every log line is JSON, so no spinner
        self.spinner = None
        self.view_worker, self.delay_seconds = view_worker, delay_seconds
        self._hurry = asyncio.Event()

    def _schedule_shutdown(self, sig: signal.Signals) -> None:  # mode: on SIGTERM and SIGINT
        if self.view_worker.draining:
            self._hurry.set()
        self.view_worker.draining = True
        super()._schedule_shutdown(sig)

    async def _stop_on_signal(self, sig: signal.Signals) -> None:
        if self.delay_seconds > 0:
            log.info("draining", delay_seconds=self.delay_seconds)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._hurry.wait(), self.delay_seconds)
        await super()._stop_on_signal(sig)


def run_worker(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT (the production entry point)."""
    app, worker = create_worker_app(settings)
    DrainingWorker(app, worker, settings.worker_shutdown_delay_seconds,
                   loglevel=settings.log_level.upper(), quiet=True,
                   logging_config=stdlib_config(settings.log_level, settings.log_format)).execute_from_commandline()
