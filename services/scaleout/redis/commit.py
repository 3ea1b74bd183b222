"""The fenced partition commit to Redis: typed sections, declared once, decoded by Lua.

A worker commits one partition batch in one Lua script (atomic, fenced on the
partition's stored position). The batch travels as **sections**: a section has a name,
a number of keys and of arguments per item, and the Lua that applies one item. The
script's argument list is ``offset, base, clock`` followed, for each section present, by
its name, its item count and its items' arguments; its key list is the fixed keys
(``FIXED``) followed by each item's own keys, section after section. Both sides are
built from the one table below — the Python encoder (``encode``) and the Lua decoder
(``SCRIPT``) — so they cannot drift apart, and the script checks the whole layout
(names, counts, arities, totals) *before* its first write: a malformed commit changes
nothing.

Every key of a commit carries the partition's hash tag (``RedisKeys.tag``), so the
script runs on Redis Cluster too; ``encode`` refuses a key outside it. Identifier links
are not partition keys (the index is addressed by identifier): ``RedisViewStore`` writes
them first-writer-wins (``SET NX``) just before the script. A link written for a batch
that is then fenced is harmless: the batch's next fold links the same identifiers to the
same customers, and a link is never overwritten.

Adding a section is one entry in ``SECTIONS`` and a field in ``PartitionCommit``; each
section has a round-trip test (tests/integration/test_redis_commit.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from projections.value.rfm_cells import Cell, Change
from services.scaleout.redis.keys import RedisKeys

__all__ = ["PartitionCommit", "Section", "SECTIONS", "FIXED", "SCRIPT", "encode"]


@dataclass(slots=True)
class PartitionCommit:
    """Everything one partition batch writes, atomically with its position ``offset``.
    ``base``: the position the batch was folded on (None: no check beyond the offset)."""

    topic: str
    partition: int
    offset: int
    base: int | None = None
    clock: int | None = None  # the latest clock tick folded on the partition
    states: dict[str, bytes] = field(default_factory=dict)  # customer -> stored state JSON
    documents: dict[str, bytes] = field(default_factory=dict)  # customer -> published document JSON
    links: Sequence[tuple[str, str, str]] = ()  # (kind, value, customer): first writer wins, written before the script
    conflicts: Sequence[bytes] = ()  # stream entries
    dead_letters: Sequence[bytes] = ()  # stream entries
    timeline: Sequence[tuple[str, int, str, bytes]] = ()  # (customer, occurred_at µs, event id, record value)
    deadlines: dict[str, int | None] = field(default_factory=dict)  # customer -> next deadline (None: none)
    transitions: Sequence[bytes] = ()  # LifecycleStageChanged JSON, fold order
    stages: dict[str, int] = field(default_factory=dict)  # customers per stage: the change
    rfm: dict[Cell, Change] = field(default_factory=dict)  # the partition's RFM cells: the change
    triggers: Sequence[tuple[str, bytes]] = ()  # (channel, trigger document JSON), fold order
    figures: dict[tuple[str, int, str, str], int] = field(default_factory=dict)  # next-best-contact figures: the change
    segment_members: Sequence[tuple[str, str, int | None]] = ()  # (segment, customer, since; None: left)
    segment_feed: Sequence[bytes] = ()  # SegmentMembershipChanged JSON, in order


class Section(NamedTuple):
    name: str
    keys: int  # keys per item
    args: int  # arguments per item
    lua: str  # applies one item: K[1..keys], A[1..args] are the item's own keys and arguments
    items: Callable[[PartitionCommit, RedisKeys], list[tuple[list[str], list[Any]]]]  # the items' (keys, args)


TRIGGER_STREAM_MAX = 1_000_000  # trigger stream entries kept, approximately

FIXED = ("position", "acks", "clock", "changed", "conflicts", "deadletters", "deadlines", "transitions", "stages",
         "rfm", "triggers", "figures", "segment_feed", "conflicts_listing", "deadletters_listing")
"""The keys every commit names, in this order at the head of KEYS (Lua: F.<name>)."""


def _fixed(c: PartitionCommit, keys: RedisKeys) -> list[str]:
    by_name = {
        "position": keys.position(c.topic, c.partition), "acks": keys.acks(c.topic, c.partition),
        "clock": keys.clock(c.topic, c.partition), "changed": keys.changed(c.topic, c.partition),
        "conflicts": keys.conflicts(c.partition), "deadletters": keys.deadletters(c.partition),
        "deadlines": keys.deadlines(c.topic, c.partition), "transitions": keys.transitions(c.partition),
        "stages": keys.stages(c.partition), "rfm": keys.rfm(c.topic, c.partition),
        "triggers": keys.triggers(c.partition), "figures": keys.contact_figures(c.partition),
        "segment_feed": keys.segment_changes(c.partition),
        "conflicts_listing": keys.listing("conflicts", c.partition),
        "deadletters_listing": keys.listing("deadletters", c.partition),
    }
    return [by_name[name] for name in FIXED]


def _stream(name: str, attribute: str, fixed: str) -> Section:
    return Section(name, 0, 1, f"redis.call('XADD', F.{fixed}, '*', 'record', A[1])",
                   lambda c, k: [([], [entry]) for entry in getattr(c, attribute)])


def _score(entry: bytes) -> int:
    """The listing's score of a conflict or dead-letter entry: its event's position (0: none)."""
    return int(orjson.loads(entry).get("position") or 0)


def _listed(name: str, attribute: str, fixed: str) -> Section:
    """A stream entry, also indexed by its event's position for the paged listing."""
    return Section(name, 0, 2, f"redis.call('XADD', F.{fixed}, '*', 'record', A[1]); "
                               f"redis.call('ZADD', F.{fixed}_listing, A[2], A[1])",
                   lambda c, k: [([], [entry, _score(entry)]) for entry in getattr(c, attribute)])


SECTIONS: tuple[Section, ...] = (
    Section("states", 1, 1, "redis.call('SET', K[1], A[1])",
            lambda c, k: [([k.state(cid, c.partition)], [state]) for cid, state in c.states.items()]),
    Section("documents", 1, 1, "redis.call('SET', K[1], A[1])",
            lambda c, k: [([k.view(cid, c.partition)], [doc]) for cid, doc in c.documents.items()]),
    _listed("conflicts", "conflicts", "conflicts"),
    _listed("dead_letters", "dead_letters", "deadletters"),
    Section("timeline", 2, 3, "redis.call('ZADD', K[1], A[1], A[2]); redis.call('HSET', K[2], A[2], A[3])",
            lambda c, k: [([k.timeline(cid, c.partition), k.events(cid, c.partition)], [at, eid, doc]) for cid, at, eid, doc in c.timeline]),
    Section("deadlines", 0, 2,
            "if A[2] == '' then redis.call('ZREM', F.deadlines, A[1]) "
            "else redis.call('ZADD', F.deadlines, A[2], A[1]) end",
            lambda c, k: [([], [cid, "" if d is None else int(d)]) for cid, d in c.deadlines.items()]),
    _stream("transitions", "transitions", "transitions"),
    Section("stages", 0, 2, "redis.call('HINCRBY', F.stages, A[1], A[2])",
            lambda c, k: [([], [stage, n]) for stage, n in c.stages.items()]),
    Section("rfm", 0, 3,
            "redis.call('HINCRBY', F.rfm, A[1] .. ':c', A[2]); redis.call('HINCRBY', F.rfm, A[1] .. ':v', A[3])",
            lambda c, k: [([], [f"{r}:{f}:{m}", ch.customers, ch.revenue]) for (r, f, m), ch in c.rfm.items()]),
    Section("triggers", 1, 1,
            f"redis.call('XADD', F.triggers, 'MAXLEN', '~', '{TRIGGER_STREAM_MAX}', '*', 'record', A[1]); "
            f"redis.call('XADD', K[1], 'MAXLEN', '~', '{TRIGGER_STREAM_MAX}', '*', 'record', A[1])",
            lambda c, k: [([k.triggers(c.partition, channel)], [doc]) for channel, doc in c.triggers]),
    Section("figures", 0, 2, "redis.call('HINCRBY', F.figures, A[1], A[2])",
            lambda c, k: [([], ["|".join(map(str, key)), n]) for key, n in c.figures.items()]),
    Section("segment_members", 1, 2,
            "if A[2] == '' then redis.call('HDEL', K[1], A[1]) else redis.call('HSET', K[1], A[1], A[2]) end",
            lambda c, k: [([k.segment(c.partition, s)], [cid, "" if since is None else int(since)])
                          for s, cid, since in c.segment_members]),
    _stream("segment_feed", "segment_feed", "segment_feed"),
    # which batch last wrote each state: the offset the commit moves the partition to
    # (``touchstream replay`` compares a live state with the replay at that offset)
    Section("changed", 0, 1, "redis.call('HSET', F.changed, A[1], ARGV[1])",
            lambda c, k: [([], [cid]) for cid in c.states]),
)


def _script() -> str:
    fixed = ", ".join(f"{name} = KEYS[{i}]" for i, name in enumerate(FIXED, 1))
    handlers = "\n".join(f"  {s.name} = {{{s.keys}, {s.args}, function(K, A) {s.lua} end}},"
                         for s in SECTIONS)
    return f"""#!lua
-- generated by services/scaleout/redis/commit.py from its SECTIONS table: edit that, not this
local F = {{{fixed}}}
local SECTIONS = {{
{handlers}
}}
local stored = tonumber(redis.call('GET', F.position) or '-1')
local offset = tonumber(ARGV[1])
if offset <= stored then return 0 end
-- a batch folded from a known position applies only on top of that same position
if ARGV[2] ~= '' and tonumber(ARGV[2]) ~= stored then return 0 end
-- decode and check the whole layout before the first write: all or nothing
local plan, a, k = {{}}, 3, {len(FIXED)}
while a < #ARGV do
  local name, n = ARGV[a + 1], tonumber(ARGV[a + 2])
  local section = SECTIONS[name]
  if section == nil or n == nil or n < 0 then return redis.error_reply('bad commit section ' .. tostring(name)) end
  plan[#plan + 1] = {{section, n, k, a + 2}}
  k, a = k + n * section[1], a + 2 + n * section[2]
end
if a ~= #ARGV or k ~= #KEYS then return redis.error_reply('commit layout does not add up') end
for _, step in ipairs(plan) do
  local section, n, k0, a0 = step[1], step[2], step[3], step[4]
  local nk, na = section[1], section[2]
  for i = 0, n - 1 do
    local K, A = {{}}, {{}}
    for j = 1, nk do K[j] = KEYS[k0 + i * nk + j] end
    for j = 1, na do A[j] = ARGV[a0 + i * na + j] end
    section[3](K, A)
  end
end
if ARGV[3] ~= '' then redis.call('SET', F.clock, ARGV[3]) end
redis.call('SET', F.position, ARGV[1])
-- acknowledgements now folded no longer hold back read-your-writes
while true do
  local first = redis.call('ZRANGE', F.acks, 0, 0)
  if first[1] == nil or tonumber(first[1]) > offset then break end
  redis.call('ZREMRANGEBYRANK', F.acks, 0, 0)
end
return 1
"""


SCRIPT = _script()


def encode(commit: PartitionCommit, keys: RedisKeys) -> tuple[list[str], list[Any]]:
    """The script's KEYS and ARGV for ``commit``: sections with no items are left out."""
    out_keys = _fixed(commit, keys)
    slot = keys.tag(commit.partition) + ":"
    args: list[Any] = [int(commit.offset), "" if commit.base is None else int(commit.base),
                       "" if commit.clock is None else int(commit.clock)]
    for section in SECTIONS:
        items = section.items(commit, keys)
        if not items:
            continue
        args += [section.name, len(items)]
        for item_keys, item_args in items:
            assert len(item_keys) == section.keys and len(item_args) == section.args, section.name
            if not all(key.startswith(slot) for key in item_keys):
                raise ValueError(f"commit section {section.name}: a key outside partition {commit.partition}'s slot")
            out_keys += item_keys
            args += item_args
    return out_keys, args
