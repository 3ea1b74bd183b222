"""One scale-out process delivers webhooks at a time: the lease in real Redis is taken when
free, renewed by its holder, refused to any other process while held, released on stop or
taken over once it expires; and a delivery is counted once per trigger however often it is
made."""

from __future__ import annotations

import asyncio

from services.scaleout.redis.views import RedisViewStore


def test_the_webhooks_lease_has_one_holder_at_a_time(redis_url: str, redis_prefix: str) -> None:
    async def main() -> None:
        async with RedisViewStore(redis_url, redis_prefix) as store:
            assert await store.hold_lease("webhooks", "api-1", 0.3)
            assert not await store.hold_lease("webhooks", "api-2", 0.3)
            assert await store.hold_lease("webhooks", "api-1", 0.3)  # renewed by its holder
            await store.release_lease("webhooks", "api-2")  # not the holder: nothing happens
            assert not await store.hold_lease("webhooks", "api-2", 0.3)
            await store.release_lease("webhooks", "api-1")
            assert await store.hold_lease("webhooks", "api-2", 0.2)
            await asyncio.sleep(0.4)  # api-2 stopped renewing: expired
            assert await store.hold_lease("webhooks", "api-1", 0.3)

    asyncio.run(main())


def test_a_delivery_is_counted_once_per_trigger(redis_url: str, redis_prefix: str) -> None:
    async def main() -> None:
        async with RedisViewStore(redis_url, redis_prefix) as store:
            assert await store.count_delivered("welcome", 1, "email", "t-1")
            assert not await store.count_delivered("welcome", 1, "email", "t-1")  # delivered again after a crash
            assert await store.count_delivered("welcome", 1, "email", "t-2")
            assert (await store.contact_figures())[("welcome", 1, "email", "delivered")] == 2

    asyncio.run(main())
