"""The identity index (identifier → customer, first writer wins) and the conflicts it met."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from projections.identity import Identifier
from projections.merge import Merge
from services.embedded.storage.base import Concern, ViewChanges

__all__ = ["IdentityIndex"]


class IdentityIndex(Concern):
    """``identifiers`` (kind, value → customer) and ``identity_conflicts`` (events naming
    identifiers another customer already owns; kinds and owners, never the values)."""

    TABLES = (
        "CREATE TABLE IF NOT EXISTS identifiers ("
        "kind TEXT, value TEXT, customer_id TEXT NOT NULL, PRIMARY KEY (kind, value)) WITHOUT ROWID",
        "CREATE TABLE IF NOT EXISTS identity_conflicts ("
        "position INTEGER PRIMARY KEY, event_id TEXT, customer_id TEXT, detail BLOB)",
        # every merge the log holds, with the position that made it and the one that undid it
        "CREATE TABLE IF NOT EXISTS merges (merge_id TEXT PRIMARY KEY, survivor TEXT NOT NULL, absorbed TEXT NOT NULL, "
        "reason TEXT, actor TEXT, position INTEGER NOT NULL, cause TEXT NOT NULL, evidence BLOB, at TEXT NOT NULL, "
        "undone_position INTEGER, undo_reason TEXT, undo_actor TEXT, undone_at TEXT)",
        "CREATE INDEX IF NOT EXISTS merges_position ON merges (position)",
        # merges the automatic policy decided, committed with the batch that met the conflict
        # and appended to the log just after it (removed once appended: never lost, never twice)
        "CREATE TABLE IF NOT EXISTS merge_outbox (event_id TEXT PRIMARY KEY, document BLOB NOT NULL)",
        "CREATE UNIQUE INDEX IF NOT EXISTS merges_undone ON merges (undone_position) WHERE undone_position IS NOT NULL",
    )

    def write(self, c: Any, changes: ViewChanges) -> None:
        c.executemany("INSERT OR IGNORE INTO identifiers VALUES (?,?,?)", changes.links)
        c.executemany("INSERT OR IGNORE INTO identity_conflicts VALUES (?,?,?,?)", changes.conflicts)
        c.executemany("INSERT OR IGNORE INTO merges (merge_id, survivor, absorbed, reason, actor, position, cause, "
                      "evidence, at) VALUES (?,?,?,?,?,?,?,?,?)", changes.merges)
        c.executemany("INSERT OR IGNORE INTO merge_outbox VALUES (?,?)", changes.outbox)
        c.executemany("UPDATE merges SET undone_position=?, undo_reason=?, undo_actor=?, undone_at=? WHERE merge_id=?",
                      [(position, reason, actor, at, merge_id) for merge_id, position, reason, actor, at in changes.unmerges])

    def outbox(self) -> list[tuple[str, bytes]]:
        """Policy merges committed and not yet appended to the log, in decision order."""
        with self.reading() as c:
            c.execute("SELECT event_id, document FROM merge_outbox ORDER BY rowid")
            return [(r[0], r[1]) for r in c.fetchall()]

    def appended(self, event_ids: Iterable[str]) -> None:
        """Forget outbox entries the log now holds."""
        with self.writing() as c:
            c.executemany("DELETE FROM merge_outbox WHERE event_id=?", [(e,) for e in event_ids])

    def merges_in_force(self) -> list[Merge]:
        """The merges not undone, in the order they were made."""
        with self.reading() as c:
            c.execute("SELECT merge_id, survivor, absorbed, reason, actor FROM merges WHERE undone_position IS NULL "
                      "ORDER BY position")
            return [Merge(*r) for r in c.fetchall()]

    def merge(self, merge_id: str) -> dict[str, Any] | None:
        """A merge as recorded: who, why, where in the log, and its undoing if undone."""
        with self.reading() as c:
            c.execute("SELECT * FROM merges WHERE merge_id=?", (merge_id,))
            row = c.fetchone()
            return None if row is None else dict(row)

    def merge_feed(self, after: int, limit: int) -> list[dict[str, Any]]:
        """Merges made and merges undone with a log position above ``after``, in log order:
        one row per change, ``undone`` telling which (the merge's own row, read at the
        position of its undoing for the latter)."""
        with self.reading() as c:
            c.execute("SELECT * FROM (SELECT *, position AS at_position, 0 AS undone FROM merges WHERE position > ? "
                      "UNION ALL SELECT *, undone_position AS at_position, 1 AS undone FROM merges "
                      "WHERE undone_position > ?) ORDER BY at_position LIMIT ?", (after, after, limit))
            return [dict(r) for r in c.fetchall()]

    def owners(self, identifiers: Iterable[Identifier]) -> dict[Identifier, str]:
        by_kind: dict[str, list[str]] = {}
        for kind, value in dict.fromkeys(identifiers):
            by_kind.setdefault(kind, []).append(value)
        found: dict[Identifier, str] = {}
        with self.reading() as c:
            for kind, values in by_kind.items():
                for i in range(0, len(values), 500):
                    chunk = values[i : i + 500]
                    c.execute(f"SELECT value, customer_id FROM identifiers WHERE kind=? AND value IN "
                              f"({','.join('?' * len(chunk))})", [kind, *chunk])
                    found.update({(kind, r[0]): r[1] for r in c.fetchall()})
        return found

    def conflicts(self, *, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """Conflict rows after the log position ``after``, oldest first."""
        return [dict(r) for r in self.after("identity_conflicts", "*", "position", after, limit)]

    def count(self) -> int:
        with self.reading() as c:
            c.execute("SELECT COUNT(*) FROM identifiers")
            return int(c.fetchone()[0])

    def count_conflicts(self) -> int:
        with self.reading() as c:
            c.execute("SELECT COUNT(*) FROM identity_conflicts")
            return int(c.fetchone()[0])
