"""docs/REDIS_KEYS.md names every key the scale-out runtime writes: downstream readers
learn the layout there, so a key the code builds and the page omits is a defect."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from services.scaleout.redis.keys import RedisKeys
from services.scaleout.redis.segments import segment_key

DOC = Path(__file__).resolve().parents[2] / "docs" / "REDIS_KEYS.md"


def documented() -> set[str]:
    return set(re.findall(r"`(\{prefix\}:[^`]*)`", DOC.read_text(encoding="utf-8")))


def built() -> set[str]:
    """Every key pattern ``RedisKeys`` builds, its arguments written as the page names them."""
    keys = RedisKeys("{prefix}")
    found: set[str] = set()
    for name, member in inspect.getmembers(RedisKeys):
        if name.startswith("_"):
            continue
        if isinstance(member, property):
            found.add(getattr(keys, name))
        elif inspect.isfunction(member):
            parameters = list(inspect.signature(member).parameters)[1:]
            if name == "triggers":
                found |= {keys.triggers(), keys.triggers("{channel}")}
                continue
            arguments = {p: "{" + p + "}" for p in parameters}
            if "partition" in arguments:
                # the partition is formatted as an integer: stand in a number, then name it
                found.add(member(keys, **{**arguments, "partition": 7}).replace(":7", ":{partition}"))
            else:
                found.add(member(keys, **arguments))
    return found | {segment_key("{prefix}", "{segment_id}"), segment_key("{prefix}", None)}


def test_every_key_the_code_builds_is_on_the_page() -> None:
    missing = built() - documented()
    assert missing == set(), f"docs/REDIS_KEYS.md does not name: {sorted(missing)}"
    assert len(built()) >= 25
