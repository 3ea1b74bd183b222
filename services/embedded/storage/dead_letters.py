"""Events the projection could not fold, with the reason (the record itself stays in the log)."""

from __future__ import annotations

from typing import Any

from services.embedded.storage.base import Concern, ViewChanges

__all__ = ["DeadLetters"]


class DeadLetters(Concern):
    TABLES = ("CREATE TABLE IF NOT EXISTS dead_letters (position INTEGER PRIMARY KEY, event_id TEXT, reason TEXT, "
              "record BLOB)",)

    def write(self, c: Any, changes: ViewChanges) -> None:
        c.executemany("INSERT OR IGNORE INTO dead_letters VALUES (?,?,?,?)", changes.dead_letters)

    def rows(self, *, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """Dead letters after the log position ``after``, oldest first."""
        return [dict(r) for r in self.after("dead_letters", "*", "position", after, limit)]

    def at(self, position: int) -> dict[str, Any] | None:
        """The dead letter of the log record at ``position``, or None."""
        rows = self.rows(after=position - 1, limit=1)
        return rows[0] if rows and rows[0]["position"] == position else None

    def count(self) -> int:
        with self.reading() as c:
            c.execute("SELECT COUNT(*) FROM dead_letters")
            return int(c.fetchone()[0])
