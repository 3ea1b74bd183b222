"""docs/REDIS_KEYS.md is generated from the key table in services/scaleout/redis/keys.py,
and that table names every key ``RedisKeys`` builds: downstream readers learn the layout
there, so a key the code builds and the page omits is a defect."""

from __future__ import annotations

import inspect

from services.scaleout.redis.keys import KEYS, RedisKeys
from services.scaleout.redis.keys_doc import REDIS_KEYS_DOC, render_markdown


def test_the_page_is_current() -> None:
    assert REDIS_KEYS_DOC.read_text(encoding="utf-8") == render_markdown(), (
        "docs/REDIS_KEYS.md is stale: run `touchstream redis-keys-doc --out docs/REDIS_KEYS.md`")


def _kinds(name: str) -> str:
    """What a key name is, its variable parts removed: ``{p7}:view:x`` -> ``view``."""
    return name.split("}:", 1)[-1].split(":")[0] if "}:" in name else name.split(":")[1]


def test_every_key_the_code_builds_is_in_the_table() -> None:
    keys = RedisKeys("pre", 9)
    built: set[str] = set()
    for name, member in inspect.getmembers(RedisKeys):
        if name.startswith("_") or name in {"tag", "partition_of", "partitions", "prefix"}:
            continue
        if isinstance(member, property):
            built.add(getattr(keys, name))
        elif inspect.isfunction(member):
            parameters = [p for p in inspect.signature(member).parameters.values()][1:]
            arguments = [7 if p.name == "partition" else "deadletters" if p.name == "stream" else "x"
                         for p in parameters if p.default is inspect.Parameter.empty]
            built.add(member(keys, *arguments))
    documented = {k.build(RedisKeys("pre", 9)).replace("{p<partition>}", "{p7}") for k in KEYS}
    missing = {_kinds(b) for b in built} - {_kinds(d) for d in documented}
    assert missing == set(), f"KEYS (docs/REDIS_KEYS.md) does not name: {sorted(missing)}"
    assert len(KEYS) >= 30


def test_every_partition_key_carries_the_partition_tag_and_the_rest_a_named_slot_or_none() -> None:
    keys = RedisKeys("pre", 4)
    for key in KEYS:
        name = key.build(keys)
        tag = name[name.index("{") + 1:name.index("}")] if "{" in name else None
        assert tag in {None, "p<partition>", "ingest", "identity", "delivery"}, name
        if key.writer.startswith("worker commit script"):
            assert tag == "p<partition>", f"{name}: a commit writes only its partition's slot"


def test_a_customer_s_keys_are_on_the_customer_s_partition() -> None:
    from services.scaleout.kafka.records import partition_of

    keys = RedisKeys("pre", 12)
    for customer in ("cus_1", "cus_1001", "ä:{x}", "9" * 80):
        p = partition_of(customer, 12)
        for build in (keys.view, keys.state, keys.timeline, keys.events):
            assert build(customer).startswith(f"pre:{{p{p}}}:"), build(customer)


def test_a_prefix_with_braces_is_refused() -> None:
    import pytest

    with pytest.raises(ValueError, match="braces"):
        RedisKeys("a{b}")
