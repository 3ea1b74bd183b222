"""Integration fixtures: real external processes on loopback.

``tansu`` is one Tansu broker (Kafka protocol, in-memory storage) for the whole session:
it starts in well under a second, but topics are shared, so tests use their own topic
names or customer ids. A test that stops the broker (``kill()`` for an outage: ``stop()``
waits 5 s while clients are connected) must start it again before it ends
(``tansu.start()``, same port); the restarted broker is empty (memory storage), so it
recreates whatever topics it needs.

``redis_url`` is the Redis of the session: ``REDIS_URL`` when set, else a private
redis-server on a free loopback port (tests/support/redis_server.py). Tests share it, so
each takes its own key prefix from ``redis_prefix`` (its keys are deleted afterwards).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.redis_server import RedisServer, RedisServerFailed, delete_prefix, unique_prefix
from tests.support.tansu import TansuBroker


@pytest.fixture(scope="session")
def tansu() -> Iterator[TansuBroker]:
    with TansuBroker() as broker:
        yield broker


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    try:
        server = RedisServer().start()
    except RedisServerFailed as error:
        pytest.fail(str(error), pytrace=False)
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    prefix = unique_prefix()
    yield prefix
    delete_prefix(redis_url, prefix)
