"""Kafka topics, read from the one topic list in ``schemas/topics.yaml``, and their creation.

Contract:
- ``kafka_streams()`` returns every ``kind: kafka`` stream of the file by name (active and
  planned), with its cleanup policy and status.
- ``ensure_topics(bootstrap, partitions, names=None)`` creates every Kafka stream of the
  file (``default_topics()``: touchpoints, lifecycle, triggers per channel, customer
  views, dead letters) or exactly ``names``, each with
  ``partitions`` partitions and its ``cleanup.policy`` from the file. A topic that already
  exists is fine (its partition count is left as it is); any other per-topic error raises
  ``TopicCreationFailed`` naming the topic; an unreachable broker raises it too. Returns
  the names it created (empty when all existed), so calling it at every start is safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import structlog
import yaml
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, for_code

__all__ = [
    "TOPICS_FILE",
    "TOUCHPOINTS_TOPIC",
    "CUSTOMER_VIEWS_TOPIC",
    "DEAD_LETTERS_TOPIC",
    "REQUIRED_TOPICS",
    "default_topics",
    "KafkaStream",
    "TopicCreationFailed",
    "kafka_streams",
    "ensure_topics",
]

log = structlog.get_logger("touchstream.kafka.topics")

TOPICS_FILE = Path(__file__).resolve().parents[3] / "schemas" / "topics.yaml"

# Named here because code refers to them; kafka_streams() checks they are in the file, so
# a rename there fails loudly instead of creating a topic nobody reads.
TOUCHPOINTS_TOPIC = "touchstream.touchpoints.v1"
CUSTOMER_VIEWS_TOPIC = "touchstream.customer-views.v1"
LIFECYCLE_TOPIC = "touchstream.lifecycle.v1"
SEGMENTS_TOPIC = "touchstream.segments.v1"
DEAD_LETTERS_TOPIC = "touchstream.dead-letters.v1"


def trigger_topic(channel: str) -> str:
    """The next-best-contact trigger topic of a contact channel (call, email, sms, visit, web, mail)."""
    return f"touchstream.triggers.{channel}.v1"


TRIGGER_TOPICS = tuple(trigger_topic(c) for c in ("call", "email", "sms", "visit", "web", "mail"))
# The topics the code writes today; every other Kafka stream of the list (triggers per
# channel) is created at start too, so its consumers can subscribe before the first
# record (see ``default_topics``).
REQUIRED_TOPICS: tuple[str, ...] = (TOUCHPOINTS_TOPIC, CUSTOMER_VIEWS_TOPIC, LIFECYCLE_TOPIC, DEAD_LETTERS_TOPIC,
                                    *TRIGGER_TOPICS, SEGMENTS_TOPIC)

TOPIC_ALREADY_EXISTS = 36  # Kafka error code; Tansu answers it in the response, no exception


class TopicCreationFailed(Exception):
    """A topic could not be created; the message names it and the broker's reason."""


@dataclass(frozen=True, slots=True)
class KafkaStream:
    name: str
    status: str  # "active" | "planned"
    key: str
    cleanup_policy: str  # "delete" | "compact"


@cache
def kafka_streams(path: Path = TOPICS_FILE) -> dict[str, KafkaStream]:
    """The Kafka streams of the topic list, by name; raises ValueError if one the code
    names is missing."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    streams = {
        s["name"]: KafkaStream(s["name"], s["status"], s["key"], s["cleanup_policy"])
        for s in document["streams"]
        if s.get("kind") == "kafka"
    }
    missing = [name for name in REQUIRED_TOPICS if name not in streams]
    if missing:
        raise ValueError(f"{path} does not list the Kafka topics {missing}")
    return streams


def default_topics() -> tuple[str, ...]:
    """Every Kafka stream of the topic list, active and planned, in file order."""
    return tuple(kafka_streams())


async def ensure_topics(
    bootstrap: str,
    partitions: int,
    names: tuple[str, ...] | list[str] | None = None,
    *,
    replication_factor: int = 1,
    request_timeout_ms: int = 5000,
    touchpoints: str = TOUCHPOINTS_TOPIC,
) -> list[str]:
    """Create the topics that do not exist yet; returns the names created.

    ``touchpoints``: the name the touchpoints topic has here (a generation of it after a
    repartition, ``kafka_touchpoints_topic``), created like the listed one.

    ``replication_factor`` is 1 for a single broker (Tansu, a developer's Kafka); a
    production cluster passes its own (CreateTopics v3, what aiokafka speaks here, has no
    "broker default").
    """
    if partitions < 1:  # Tansu accepts 0 partitions and then cannot take a record
        raise ValueError(f"partitions must be at least 1, not {partitions}")
    streams = dict(kafka_streams())
    streams[touchpoints] = streams[TOUCHPOINTS_TOPIC]
    wanted = [touchpoints if n == TOUCHPOINTS_TOPIC else n for n in (default_topics() if names is None else names)]
    unknown = [name for name in wanted if name not in streams]
    if unknown:
        raise ValueError(f"not Kafka topics of {TOPICS_FILE.name}: {unknown}")
    new_topics = [
        NewTopic(name, partitions, replication_factor, topic_configs={"cleanup.policy": streams[name].cleanup_policy})
        for name in wanted
    ]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=request_timeout_ms)
    try:
        await admin.start()
        response = await admin.create_topics(new_topics)
    except KafkaError as error:
        raise TopicCreationFailed(f"could not create topics {wanted} at {bootstrap}: {error!r}") from error
    finally:
        await admin.close()
    created = []
    for topic, code, message in _topic_errors(response):
        if code == 0:
            created.append(topic)
        elif code != TOPIC_ALREADY_EXISTS:
            reason = message or for_code(code).__name__
            raise TopicCreationFailed(f"could not create topic {topic}: error {code} ({reason})")
    log.info("topics_ensured", created=len(created), existing=len(wanted) - len(created), partitions=partitions)
    return created


def _topic_errors(response: object) -> list[tuple[str, int, str | None]]:
    # CreateTopicsResponse v0 has (topic, code) pairs, v1+ add a message: read both.
    return [(entry[0], entry[1], entry[2] if len(entry) > 2 else None) for entry in response.topic_errors]  # type: ignore[attr-defined]
