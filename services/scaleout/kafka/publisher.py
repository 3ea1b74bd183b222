"""Ingest → Kafka: accepted touchpoints written to the touchpoints topic, acknowledged.

Contract of ``TouchpointPublisher``:
- ``start()`` starts an ``acks="all"`` producer. It first asks for an idempotent producer
  and, if the broker refuses (Tansu answers InitProducerId with UnknownError), falls back
  to a plain one; ``.idempotent`` and the log line ``producer_started`` say which. An
  unreachable broker is ``StorageUnavailable`` (nothing is learnt about idempotence then).
- ``publish(documents)`` takes canonical touchpoint dicts (``projections.codec``) whose
  ``customer.customer_id`` is already resolved, and returns ``(partition, offset)`` per
  document, in order, only once the broker acknowledged every one of them. Record key =
  customer id (UTF-8), so one customer's events share a partition and keep their order;
  value = Avro single-object encoding (``services.contracts.encode``); CloudEvents-style
  headers; the record layout is ``services.scaleout.kafka.records``.
- Every document is validated and encoded before the first send: a bad one raises
  ``ValueError`` (or the codec's / contracts' error) and nothing is written.
- Any broker failure, or no acknowledgement within the request timeout, raises
  ``services.embedded.ingest.StorageUnavailable`` (the API answers 503 with Retry-After). Some
  records may still have been written then (at-least-once, as with any retry): the
  processor removes duplicates by ``event_id``, which also covers the retries of a
  non-idempotent producer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError

from projections.codec import from_dict
from projections.identity import Identifier
from projections.touchpoints import TOUCHPOINT_TYPES
from services.contracts import default_registry
from services.contracts.confluent import ConfluentRegistry, RegistryUnavailable
from services.ports import StorageUnavailable
from services.scaleout.kafka.records import Headers, cloudevents_headers, resolution_header
from services.scaleout.kafka.topics import TOUCHPOINTS_TOPIC
from services.settings import Settings

__all__ = ["TouchpointPublisher", "Decision", "customer_key", "cloudevents_headers"]

log = structlog.get_logger("touchstream.kafka.publisher")

BREAKER_PROBE_SECONDS = 0.25  # while the breaker is open: how long a request waits to learn the broker is back

Decision = tuple[str, Sequence[tuple[Identifier, str]]]  # (customer id, conflicts) from identity.resolve


def customer_key(document: dict[str, Any]) -> bytes:
    """The record key: the resolved customer id; ValueError when there is none, because
    an unkeyed record would land on any partition and break per-customer order."""
    customer = document.get("customer")
    customer_id = customer.get("customer_id") if isinstance(customer, dict) else None
    if not isinstance(customer_id, str) or not customer_id:
        raise ValueError(f"touchpoint {document.get('event_id')!r} has no resolved customer.customer_id")
    return customer_id.encode("utf-8")


class TouchpointPublisher:
    def __init__(
        self,
        bootstrap: str,
        *,
        topic: str = TOUCHPOINTS_TOPIC,
        request_timeout_ms: int = 5000,
        client_id: str = "touchstream-ingest",
        schema_registry: ConfluentRegistry | None = None,
    ):
        self.bootstrap, self.topic, self.client_id = bootstrap, topic, client_id
        self.request_timeout_ms = request_timeout_ms
        self.idempotent: bool | None = None  # known once started
        self._producer: AIOKafkaProducer | None = None
        self.schema_registry = schema_registry
        self._registry_ids: dict[str, int] | None = None  # family -> id, once registered
        self._starting = asyncio.Lock()
        # the circuit breaker: after the broker failed to answer, requests are refused at
        # once until this instant (monotonic), instead of each waiting the full timeout
        self.breaker_seconds = max(2.0, 2 * request_timeout_ms / 1000)
        self._refuse_until = 0.0
        self._breaker_probe: asyncio.Future[str | None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> TouchpointPublisher:
        registry = ConfluentRegistry(settings.schema_registry_url) if settings.schema_registry_url else None
        return cls(settings.kafka_bootstrap, topic=settings.kafka_touchpoints_topic,
                   request_timeout_ms=settings.kafka_request_timeout_ms, schema_registry=registry)

    def _new_producer(self, idempotent: bool) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=self.client_id,
            acks="all",  # 2xx means every in-sync replica has it
            enable_idempotence=idempotent,
            request_timeout_ms=self.request_timeout_ms,  # also bounds metadata waits and batch expiry
        )

    async def start(self) -> None:
        async with self._starting:  # concurrent requests while the broker was away: one producer
            await self._start()

    async def _start(self) -> None:
        if self._producer is not None:
            return
        if self.schema_registry is not None and self._registry_ids is None:
            try:
                self._registry_ids = await self.schema_registry.register(
                    f"touchpoint/{kind}" for kind in TOUCHPOINT_TYPES)
            except RegistryUnavailable as error:
                raise StorageUnavailable(str(error)) from error
            log.info("schemas_registered", registry=self.schema_registry.url, schemas=len(self._registry_ids))
        producer = self._new_producer(idempotent=True)
        try:
            await producer.start()
        except KafkaConnectionError as error:
            await producer.stop()
            raise StorageUnavailable(f"Kafka unreachable at {self.bootstrap}: {error}") from error
        except KafkaError as error:
            await producer.stop()
            reason = type(error).__name__
            producer = self._new_producer(idempotent=False)
            try:
                await producer.start()
            except KafkaError as second:
                await producer.stop()
                raise StorageUnavailable(f"Kafka producer did not start at {self.bootstrap}: {second!r}") from second
            self._started(producer, idempotent=False, reason=f"broker refused idempotence ({reason})")
            return
        self._started(producer, idempotent=True, reason="supported")

    def _started(self, producer: AIOKafkaProducer, *, idempotent: bool, reason: str) -> None:
        self._producer, self.idempotent = producer, idempotent
        log.info("producer_started", idempotent=idempotent, reason=reason, topic=self.topic)

    async def probe(self, timeout: float) -> str | None:
        """None when the cluster answers a metadata request within ``timeout`` seconds, else
        why not. A connected producer says nothing of a broker that stopped answering (a
        frozen or partitioned broker keeps its sockets open): readiness asks each time."""
        producer = self._producer
        if producer is None:
            return "not connected"
        try:
            answered = await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout)
        except TimeoutError:
            return f"no metadata answer within {timeout:g} s"
        except KafkaError as error:
            return type(error).__name__
        if not answered.brokers():
            return "no broker in the metadata"
        self._refuse_until = 0.0  # answering again: ingest goes through at once, not after the window
        return None

    async def stop(self) -> None:
        if self.schema_registry is not None:
            await self.schema_registry.aclose()
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()  # flushes what is pending first

    async def publish(self, documents: list[dict[str, Any]],
                      decisions: Sequence[Decision] | None = None) -> list[tuple[int, int]]:
        """Write the documents; returns (partition, offset) of each, in order.

        ``decisions`` (one per document) are the identity decisions taken at ingest: the
        record key is the decided customer and the decision travels in the
        ``touchstream-resolution`` header (``services.scaleout.kafka.records``). Without them the
        document must name its customer."""
        if self._producer is None:
            raise StorageUnavailable("the Kafka publisher is not started")
        # Validate and encode everything first: a bad document must not leave its
        # predecessors half-published.
        records = [self._record(d, None if decisions is None else decisions[i], self._registry_ids)
                   for i, d in enumerate(documents)]
        if not records:
            return []
        return await self._send([(None, key, value, headers) for key, value, headers in records], "touchpoints")

    async def publish_ticks(self, records: list[tuple[int, bytes, Headers]]) -> list[tuple[int, int]]:
        """Clock ticks, one record per partition given (partition, value, headers);
        (partition, offset) of each once acknowledged. Ticks are always Avro single-object
        encoded (readers take both framings)."""
        if self._producer is None:
            raise StorageUnavailable("the Kafka publisher is not started")
        return await self._send([(partition, None, value, headers) for partition, value, headers in records],
                                "clock ticks")

    async def _send(self, records: list[tuple[int | None, bytes | None, bytes, Headers]],
                    what: str) -> list[tuple[int, int]]:
        """Send (partition or None for the key's, key, value, headers) and wait for every
        ack; (partition, offset) of each, or StorageUnavailable within request_timeout_ms."""
        assert self._producer is not None
        await self._through_breaker()
        started = time.monotonic()
        deliveries: list[asyncio.Future[Any]] = []
        try:
            # aiokafka bounds each step by request_timeout_ms; the outer bound makes the
            # whole call (metadata + buffer + acks) answer within it, whatever goes wrong.
            async with asyncio.timeout(self.request_timeout_ms / 1000):
                for partition, key, value, headers in records:
                    # send() only queues the record: all of them go out in a few batches.
                    delivery = await self._producer.send(self.topic, value=value, key=key, partition=partition,
                                                         headers=headers)
                    delivery.add_done_callback(_observe)
                    deliveries.append(delivery)
                acks = await asyncio.gather(*deliveries)
        except (KafkaError, TimeoutError) as error:
            waited_ms = round((time.monotonic() - started) * 1000)
            detail = "no acknowledgement" if isinstance(error, TimeoutError) else repr(error)
            self._open_breaker()
            raise StorageUnavailable(
                f"Kafka did not store {len(records)} {what} on {self.topic} at {self.bootstrap} "
                f"(after {waited_ms} ms, timeout {self.request_timeout_ms} ms): {detail}",
                retry_after=self.breaker_seconds,
            ) from error
        self._refuse_until = 0.0  # the broker answered: closed
        return [(ack.partition, ack.offset) for ack in acks]

    async def _through_breaker(self) -> None:
        """While the breaker is open (the broker did not answer a write a moment ago), one
        quick metadata request, shared by every request arriving meanwhile, says whether
        the broker answers again: if so the breaker closes and the write goes ahead; if not
        the request is refused at once, with the rest of the window as Retry-After."""
        if time.monotonic() >= self._refuse_until:
            return
        if self._breaker_probe is None or self._breaker_probe.done():
            self._breaker_probe = asyncio.ensure_future(self.probe(BREAKER_PROBE_SECONDS))
        problem = await asyncio.shield(self._breaker_probe)
        if problem is None:
            return
        wait = max(0.0, self._refuse_until - time.monotonic())
        raise StorageUnavailable(f"Kafka at {self.bootstrap} does not answer ({problem}); refused at once for "
                                 f"{wait:.1f} s more", retry_after=wait)

    def _open_breaker(self) -> None:
        if time.monotonic() >= self._refuse_until:
            log.warning("kafka_breaker_open", seconds=self.breaker_seconds, bootstrap=self.bootstrap)
        self._refuse_until = time.monotonic() + self.breaker_seconds

    @staticmethod
    def _record(document: dict[str, Any], decision: Decision | None,
                registry_ids: dict[str, int] | None = None) -> tuple[bytes, bytes, Headers]:
        event = from_dict(document)
        headers = cloudevents_headers(document)
        registry_id = None if registry_ids is None else registry_ids[f"touchpoint/{event.type}"]
        value = default_registry().encode(event, registry_id=registry_id)
        if decision is None:
            return customer_key(document), value, headers
        customer_id, conflicts = decision
        headers.append(resolution_header(event, customer_id, conflicts))
        return customer_id.encode("utf-8"), value, headers


def _observe(delivery: asyncio.Future[Any]) -> None:
    # Deliveries abandoned by a timeout may fail later: retrieve the exception so asyncio
    # does not log "Future exception was never retrieved" long after the 503.
    if not delivery.cancelled():
        delivery.exception()
