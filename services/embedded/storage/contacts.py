"""Next best contact: the trigger feed, the outcomes recorded, and the per-rule figures."""

from __future__ import annotations

from typing import Any

import orjson

from projections.nbc.document import trigger_document
from services.embedded.storage.base import Concern, ViewChanges

__all__ = ["Contacts", "dumps"]


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


class Contacts(Concern):
    """``nbc_triggers`` (the feed, cursor = ``feed``), ``nbc_outcomes`` and ``nbc_figures``."""

    TABLES = (
        "CREATE TABLE IF NOT EXISTS nbc_triggers (feed INTEGER PRIMARY KEY, trigger_id TEXT UNIQUE NOT NULL, "
        "customer_id TEXT NOT NULL, channel TEXT NOT NULL, rule TEXT NOT NULL, version INTEGER NOT NULL, "
        "at INTEGER NOT NULL, document BLOB NOT NULL, position INTEGER NOT NULL)",
        "CREATE INDEX IF NOT EXISTS nbc_triggers_channel ON nbc_triggers (channel, feed)",
        "CREATE INDEX IF NOT EXISTS nbc_triggers_customer ON nbc_triggers (customer_id, feed)",
        "CREATE INDEX IF NOT EXISTS nbc_triggers_at ON nbc_triggers (at)",
        "CREATE TABLE IF NOT EXISTS nbc_figures (rule TEXT, version INTEGER, channel TEXT, figure TEXT, "
        "count INTEGER NOT NULL, PRIMARY KEY (rule, version, channel, figure)) WITHOUT ROWID",
        "CREATE TABLE IF NOT EXISTS nbc_outcomes (trigger_id TEXT, outcome TEXT, customer_id TEXT, "
        "rule TEXT, version INTEGER, channel TEXT, at INTEGER, event_id TEXT, position INTEGER, "
        "PRIMARY KEY (trigger_id, outcome)) WITHOUT ROWID",
    )

    def write(self, c: Any, changes: ViewChanges) -> None:
        c.executemany(
            "INSERT OR IGNORE INTO nbc_triggers (trigger_id, customer_id, channel, rule, version, at, document, "
            "position) VALUES (?,?,?,?,?,?,?,?)",
            [(f.trigger_id, f.customer_id, f.channel, f.rule, f.version, f.at, dumps(trigger_document(f)),
              changes.position) for f in changes.triggers],
        )
        c.executemany(
            "INSERT OR IGNORE INTO nbc_outcomes VALUES (?,?,?,?,?,?,?,?,?)",
            [(o.trigger_id, o.outcome, o.customer_id, o.rule, o.version, o.channel, o.at, o.event_id,
              changes.position) for o in changes.outcomes],
        )
        self.add_figures(c, changes.figures)

    @staticmethod
    def add_figures(c: Any, figures: dict[tuple[str, int, str, str], int]) -> None:
        c.executemany(
            "INSERT INTO nbc_figures VALUES (?,?,?,?,?) ON CONFLICT (rule, version, channel, figure) "
            "DO UPDATE SET count=count+excluded.count",
            [(*key, n) for key, n in figures.items()],
        )

    def triggers(self, *, after: int = 0, limit: int = 100, channel: str | None = None,
                 customer_id: str | None = None) -> list[tuple[int, bytes]]:
        """(feed, document JSON) of triggers after the feed cursor ``after``, oldest first."""
        rows = self.after("nbc_triggers", "feed, document", "feed", after, limit, channel=channel,
                          customer_id=customer_id)
        return [(r[0], bytes(r[1])) for r in rows]

    def figures(self) -> dict[tuple[str, int, str, str], int]:
        with self.reading() as c:
            c.execute("SELECT rule, version, channel, figure, count FROM nbc_figures")
            return {(r[0], r[1], r[2], r[3]): r[4] for r in c.fetchall()}
