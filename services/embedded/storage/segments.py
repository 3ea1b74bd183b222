"""Segments in the embedded view store (views.sqlite): members, counts, the entry/exit feed.

Written by the runner in the batch's one transaction (``Segments.write``), so members, counts
and the feed always match the views at the tracked position, and a batch is never
applied twice. Tables:

* ``segment_members (segment, customer_id, since)``: who is in, since when (µs);
* ``segment_counts (segment, members)``: kept with the members, read by gauges and API;
* ``segment_changes (feed, change_id, segment, version, customer_id, kind, at, position)``:
  one row per entry or exit, ``feed`` the cursor, ``change_id`` deterministic;
* ``segment_definitions (segment, version, fingerprint)``: what membership was computed for.

A definition that differs from the stored one (new, changed ``where``, removed) is
re-evaluated over every stored view by ``Segments.reconcile``, in one transaction, before the
runner starts: the differences go to the feed like any entry or exit, cause ``definition``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import structlog

from projections.segments.membership import ENTERED, EXITED, Change, SegmentSet, members_of, since_of
from projections.view.document import from_state
from services.embedded.storage.base import Concern, ViewChanges
from services.segments.changes import change_id

__all__ = ["Segments"]

log = structlog.get_logger("touchstream.segments")


def _apply(c: Any, changes: Sequence[Change], cause: str) -> None:
    """Apply entries and exits inside the caller's transaction ``c``; ``cause`` names what
    made them (a log position, ``definition``) and enters their ids."""
    if not changes:
        return
    entered = [ch for ch in changes if ch.kind == ENTERED]
    exited = [ch for ch in changes if ch.kind == EXITED]
    c.executemany("INSERT OR REPLACE INTO segment_members VALUES (?,?,?)",
                  [(ch.segment, ch.customer_id, ch.at) for ch in entered])
    c.executemany("DELETE FROM segment_members WHERE segment=? AND customer_id=?",
                  [(ch.segment, ch.customer_id) for ch in exited])
    delta: dict[str, int] = {}
    for ch in changes:
        delta[ch.segment] = delta.get(ch.segment, 0) + (1 if ch.kind == ENTERED else -1)
    c.executemany("INSERT INTO segment_counts VALUES (?,?) ON CONFLICT (segment) "
                  "DO UPDATE SET members=members+excluded.members", [(s, n) for s, n in delta.items() if n])
    c.executemany("INSERT OR IGNORE INTO segment_changes (change_id, segment, version, customer_id, kind, at, cause) "
                  "VALUES (?,?,?,?,?,?,?)",
                  [(change_id(ch, cause), ch.segment, ch.version, ch.customer_id, ch.kind,
                    ch.at, cause) for ch in changes])


class Segments(Concern):
    """Segment membership, its counts, the entry/exit feed and the definitions it was computed for."""

    TABLES = (
        "CREATE TABLE IF NOT EXISTS segment_members (segment TEXT, customer_id TEXT, since INTEGER, "
        "PRIMARY KEY (segment, customer_id)) WITHOUT ROWID",
        "CREATE TABLE IF NOT EXISTS segment_counts (segment TEXT PRIMARY KEY, members INTEGER NOT NULL)",
        "CREATE TABLE IF NOT EXISTS segment_changes (feed INTEGER PRIMARY KEY, change_id TEXT UNIQUE NOT NULL, "
        "segment TEXT NOT NULL, version INTEGER, customer_id TEXT NOT NULL, kind TEXT NOT NULL, at INTEGER, "
        "cause TEXT)",
        "CREATE INDEX IF NOT EXISTS segment_changes_segment ON segment_changes (segment, at)",
        "CREATE TABLE IF NOT EXISTS segment_definitions (segment TEXT PRIMARY KEY, version INTEGER, fingerprint TEXT)",
    )

    def write(self, c: Any, changes: ViewChanges) -> None:
        _apply(c, changes.segments, str(changes.position))

    def reconcile(self, segments: SegmentSet) -> int:
        """Bring membership in line with ``segments`` where the stored definitions differ:
        every stored view is evaluated against the new, changed and removed segments, in one
        transaction. Returns the number of entries and exits it recorded."""
        with self.writing() as c:
            c.execute("SELECT segment, version, fingerprint FROM segment_definitions")
            stored = {r[0]: (r[1], r[2]) for r in c.fetchall()}
            current = {s.id: (s.version, s.fingerprint) for s in segments.segments}
            changed = SegmentSet(tuple(s for s in segments.segments if stored.get(s.id) != current[s.id]))
            removed = [sid for sid in stored if sid not in current]
            if not changed.segments and not removed:
                return 0
            moves: list[Change] = []
            c.execute("SELECT segment, customer_id FROM segment_members WHERE segment IN "
                      f"({','.join('?' * (len(changed.segments) + len(removed)))})",
                      [*(s.id for s in changed.segments), *removed])
            was: dict[tuple[str, str], bool] = {(r[0], r[1]): True for r in c.fetchall()}
            versions = {s.id: s.version for s in changed.segments} | {sid: stored[sid][0] for sid in removed}
            c.execute("SELECT state FROM customer_views")
            for (raw,) in c.fetchall():
                view = from_state(orjson.loads(raw))
                now = members_of(view, changed)
                for s in changed.segments:
                    held = was.pop((s.id, view.customer_id), False)
                    if held != (s.id in now):
                        kind = ENTERED if s.id in now else EXITED
                        moves.append(Change(view.customer_id, s.id, s.version, kind, since_of(view)))
            # members of removed segments (and any member whose view is gone) leave
            moves += [Change(cid, sid, versions[sid], EXITED, None) for sid, cid in sorted(was)]
            c.executemany("INSERT INTO segment_counts VALUES (?, 0) ON CONFLICT DO NOTHING",
                          [(s.id,) for s in changed.segments])
            _apply(c, moves, f"definition:{','.join(f'{s.id}@{s.fingerprint}' for s in changed.segments)}")
            c.executemany("DELETE FROM segment_definitions WHERE segment=?", [(sid,) for sid in removed])
            c.executemany("DELETE FROM segment_counts WHERE segment=?", [(sid,) for sid in removed])
            c.executemany("INSERT OR REPLACE INTO segment_definitions VALUES (?,?,?)",
                          [(s.id, s.version, s.fingerprint) for s in changed.segments])
        log.info("segments_reevaluated", segments=len(changed.segments), removed=len(removed), changes=len(moves))
        return len(moves)

    def counts(self) -> dict[str, int]:
        with self.reading() as c:
            c.execute("SELECT segment, members FROM segment_counts ORDER BY segment")
            return {r[0]: r[1] for r in c.fetchall()}

    def members(self, segment: str, *, after: str = "", limit: int = 1000) -> list[tuple[str, int | None, bytes]]:
        """(customer id, since, stored state) of members after ``after``, by customer id."""
        with self.reading() as c:
            c.execute("SELECT m.customer_id, m.since, v.state FROM segment_members m JOIN customer_views v "
                      "ON v.customer_id = m.customer_id WHERE m.segment = ? AND m.customer_id > ? "
                      "ORDER BY m.customer_id LIMIT ?", (segment, after, limit))
            return [(r[0], r[1], bytes(r[2])) for r in c.fetchall()]

    def feed(self, *, after: int = 0, limit: int = 100, segment: str | None = None) -> list[dict[str, Any]]:
        rows = self.after("segment_changes", "feed, change_id, segment, version, customer_id, kind, at, cause", "feed",
                          after, limit, segment=segment)
        return [dict(r) for r in rows]

    def window(self, start: int, end: int) -> dict[str, dict[str, int]]:
        """Entries and exits per segment with ``start <= at < end``."""
        with self.reading() as c:
            c.execute("SELECT segment, kind, COUNT(*) FROM segment_changes WHERE at >= ? AND at < ? "
                      "GROUP BY segment, kind", (start, end))
            out: dict[str, dict[str, int]] = {}
            for sid, kind, n in c.fetchall():
                out.setdefault(sid, {ENTERED: 0, EXITED: 0})[kind] = n
            return out
