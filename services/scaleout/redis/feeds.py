"""Reading partition-scoped Redis streams as one feed, and scanning by key prefix.

Every stream a partition's commit writes (triggers, transitions, conflicts, dead letters,
segment changes) lives in that partition's hash-tag slot (``services.scaleout.redis.keys``);
an API feed reads them merged in stream-id order, and its cursor names the last entry
read of every partition: ``FeedCursor``.
"""

from __future__ import annotations

__all__ = ["FeedCursor", "feed_cursor_pattern", "glob_prefix"]

_STREAM_ID = r"[0-9]{1,19}-[0-9]{1,19}"  # below 2**64, as a stream id


def feed_cursor_pattern(partitions: int) -> str:
    """The grammar of a feed cursor over ``partitions`` partition streams (no anchors)."""
    return _STREAM_ID if partitions == 1 else rf"{_STREAM_ID}(?:\.{_STREAM_ID}){{{partitions - 1}}}"


class FeedCursor:
    """Where a merged feed stands: the last stream id read of each partition's stream,
    written ``id.id.…`` (one per partition, in partition order; ``0-0``: nothing read)."""

    __slots__ = ("ids",)

    def __init__(self, ids: list[tuple[int, int]]) -> None:
        self.ids = ids

    @classmethod
    def start(cls, partitions: int) -> FeedCursor:
        return cls([(0, 0)] * partitions)

    @classmethod
    def at_millisecond(cls, ms: int, partitions: int) -> FeedCursor:
        """Before every entry added at or after the Unix millisecond ``ms``."""
        return cls([(ms - 1, 2**64 - 1) if ms > 0 else (0, 0)] * partitions)

    @classmethod
    def parse(cls, text: str | None, partitions: int) -> FeedCursor:
        """ValueError for a cursor this feed did not give (another partition count included)."""
        if not text:
            return cls.start(partitions)
        parts = text.split(".")
        if len(parts) != partitions:
            raise ValueError(f"not a cursor of this feed: {len(parts)} partition(s) named, the topic has {partitions}")
        ids = []
        for part in parts:
            ms, dash, seq = part.partition("-")
            if not (dash and ms.isdigit() and seq.isdigit() and len(ms) <= 20 and len(seq) <= 20):
                raise ValueError("not a cursor of this feed")
            ids.append((int(ms), int(seq)))
        return cls(ids)

    def __str__(self) -> str:
        return ".".join(f"{ms}-{seq}" for ms, seq in self.ids)


def glob_prefix(text: str) -> str:
    """A SCAN pattern matching every key that starts with ``text``."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text) + "*"
