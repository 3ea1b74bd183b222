"""faust-streaming on our brokers: a fetch wait we choose, and the one way to build an App.

faust-streaming 0.15.3 builds its worker consumer with ``fetch_max_wait_ms=1500``
hard-coded (``AIOKafkaConsumerThread._create_worker_consumer``). A broker that holds an
empty fetch for the whole wait (Tansu does, docs/SCALE_OUT.md) then delays every record
arriving on an idle partition by up to 1.5 s. This module plugs in a transport whose
consumer takes the wait from the app's configuration instead:

* ``TouchstreamSettings`` is faust's ``Settings`` plus ``consumer_fetch_max_wait_ms``;
* ``Transport`` is faust's aiokafka transport whose consumer thread sets that wait on the
  aiokafka consumer it creates (before ``start()``, where aiokafka hands it to its fetcher);
* it is registered under the broker URL scheme ``touchstream-kafka://`` (``SCHEME``), so
  any App whose broker URL uses that scheme gets it;
* ``make_app(app_id, settings, datadir=..., **overrides)`` builds a ``faust.App`` with
  that transport and everything else the runtime needs from ``services.settings``.

Contract of ``make_app``: the App talks to ``settings.kafka_bootstrap`` with the fetch
wait ``settings.kafka_fetch_max_wait_ms``, the session timeout and heartbeat of the
settings, ``settings.kafka_partitions`` for the topics it declares, its web server on
``settings.worker_host:settings.worker_web_port``, its data under ``datadir``, a plain
(non-idempotent) producer with ``acks=all`` (Tansu refuses InitProducerId), no
leader-election topic, and it reads NO environment variable: faust otherwise lets
``BROKER_SESSION_TIMEOUT``, ``WEB_PORT``, ``DATADIR``... override what we pass, and
settings are read in one place only (``services.settings``). Any faust setting can be
overridden by keyword (``make_app("x", s, datadir=d, web_enabled=False)``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiokafka
import faust
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types.settings import params, sections

from services.settings import Settings

__all__ = ["SCHEME", "TouchstreamSettings", "TouchstreamApp", "Transport", "make_app"]

SCHEME = "touchstream-kafka"


class TouchstreamSettings(faust.Settings):
    @sections.Consumer.setting(params.UnsignedInt, env_name=None, default=1500)
    def consumer_fetch_max_wait_ms(self) -> int:  # type: ignore[empty-body]  # faust reads the docstring
        """How long the broker may hold a fetch that finds no record (faust's value is
        1500 ms). On a broker that holds an empty fetch for the whole wait, this is the
        floor of the time from a record's acknowledgement to its consumption."""


class TouchstreamApp(faust.App):
    """A faust App configured with ``TouchstreamSettings``."""

    Settings = TouchstreamSettings


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    # mode waits this long for the thread to shut down; with the broker gone, aiokafka's
    # leave-group never completes and mode's default (60 s) outlasts a Kubernetes grace period
    shutdown_timeout = 10.0

    def _create_worker_consumer(self, transport: faust_aiokafka.Transport) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start() when it builds its Fetcher: setting it here,
        # before start, is the same as passing it to the constructor.
        consumer._fetch_max_wait_ms = fetch_max_wait_ms(self.app.conf)
        return consumer


class Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    """faust's aiokafka transport with the configured fetch wait."""

    Consumer = Consumer


def fetch_max_wait_ms(conf: Any) -> int:
    """The configured wait; faust's own when the App was not built with our settings."""
    return int(getattr(conf, "consumer_fetch_max_wait_ms", 1500))


# The registry maps a URL scheme to "module:attribute", imported lazily: an App whose
# broker URL says touchstream-kafka:// loads this module by itself.
TRANSPORTS.aliases[SCHEME] = f"{__name__}:Transport"


def make_app(app_id: str, settings: Settings, *, datadir: Path | str, **overrides: Any) -> faust.App:
    """A faust App on our broker with our transport; ``overrides`` are faust settings."""
    config: dict[str, Any] = {
        "broker": f"{SCHEME}://{settings.kafka_bootstrap}",
        "consumer_fetch_max_wait_ms": settings.kafka_fetch_max_wait_ms,
        "broker_session_timeout": settings.kafka_session_timeout_seconds,
        "broker_heartbeat_interval": settings.kafka_heartbeat_seconds,
        # faust refuses a session timeout longer than the request timeout
        "broker_request_timeout": max(90.0, settings.kafka_session_timeout_seconds + 5),
        "producer_request_timeout": settings.kafka_request_timeout_ms / 1000,
        "producer_acks": -1,  # all in-sync replicas; idempotence only comes with exactly_once
        "processing_guarantee": "at_least_once",  # exactly_once needs transactions (Tansu: no)
        "topic_partitions": settings.kafka_partitions,
        "topic_replication_factor": settings.kafka_replication_factor,
        "topic_allow_declare": True,  # changelog topics of tables, created with our partitions
        "topic_disable_leader": True,  # no on_leader tasks: no leader-election topic to create
        "web_host": settings.worker_host,
        "web_bind": settings.worker_host,
        "web_port": settings.worker_web_port,
        "datadir": str(datadir),
        "autodiscover": False,
        "env": {},  # faust reads no environment variable: services.settings is the only reader
        **overrides,
    }
    Path(datadir).mkdir(parents=True, exist_ok=True)
    return TouchstreamApp(app_id, **config)
