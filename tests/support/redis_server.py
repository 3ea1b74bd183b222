"""A private redis-server for integration tests (the product's launcher,
``tools.redis_server``, which ``touchstream up`` uses too), or the one ``REDIS_URL`` names.

``RedisServer`` starts on a free loopback port in a private temporary directory, without
persistence unless ``durable=True`` (append-only file fsynced on every write, so
``kill()`` then ``start()`` brings the data back); ``stop()`` then ``start()`` restarts
it on the same port; ``pause()``/``resume()`` freeze it (SIGSTOP/SIGCONT) with its
connections open; ``close()`` also removes its directory.

``unique_prefix()`` gives each test its own key prefix; ``delete_prefix(url, prefix)``
removes a test's keys afterwards (useful when ``REDIS_URL`` points at a shared server).
"""

from __future__ import annotations

import uuid

from tools.bench.server import free_port
from tools.redis_server import RedisServer, RedisServerFailed, redis_server_binary

__all__ = ["RedisServer", "RedisServerFailed", "redis_server_binary", "unique_prefix", "delete_prefix", "free_port"]


def unique_prefix() -> str:
    return f"ts-test-{uuid.uuid4().hex[:12]}"


def delete_prefix(url: str, prefix: str) -> None:
    """Delete every key under ``prefix:`` (SCAN + UNLINK)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
    try:
        batch = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for i in range(0, len(batch), 500):
            client.unlink(*batch[i : i + 500])
    finally:
        client.close()
