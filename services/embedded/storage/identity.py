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
        "reason TEXT, actor TEXT, position INTEGER NOT NULL, undone_position INTEGER, undo_reason TEXT, undo_actor TEXT)",
    )

    def write(self, c: Any, changes: ViewChanges) -> None:
        c.executemany("INSERT OR IGNORE INTO identifiers VALUES (?,?,?)", changes.links)
        c.executemany("INSERT OR IGNORE INTO identity_conflicts VALUES (?,?,?,?)", changes.conflicts)
        c.executemany("INSERT OR IGNORE INTO merges (merge_id, survivor, absorbed, reason, actor, position) "
                      "VALUES (?,?,?,?,?,?)", changes.merges)
        c.executemany("UPDATE merges SET undone_position=?, undo_reason=?, undo_actor=? WHERE merge_id=?",
                      [(position, reason, actor, merge_id) for merge_id, position, reason, actor in changes.unmerges])

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
