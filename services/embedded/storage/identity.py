"""The identity index (identifier → customer, first writer wins) and the conflicts it met."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from projections.identity import Identifier
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
    )

    def write(self, c: Any, changes: ViewChanges) -> None:
        c.executemany("INSERT OR IGNORE INTO identifiers VALUES (?,?,?)", changes.links)
        c.executemany("INSERT OR IGNORE INTO identity_conflicts VALUES (?,?,?,?)", changes.conflicts)

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
