"""The webhook delivery ledger: dispatchers' cursors, what was delivered, what was given up on."""

from __future__ import annotations

from typing import Any

from services.embedded.storage.base import Concern
from services.embedded.storage.contacts import Contacts

__all__ = ["DeliveryLedger"]


class DeliveryLedger(Concern):
    """``delivery_cursors`` (a dispatcher's position in the trigger feed),
    ``delivered_triggers`` (acknowledged by a channel system: counted once) and
    ``delivery_dead_letters``. Written by the dispatcher, never by the runner."""

    TABLES = (
        "CREATE TABLE IF NOT EXISTS delivery_cursors (name TEXT PRIMARY KEY, cursor TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS delivered_triggers (trigger_id TEXT PRIMARY KEY) WITHOUT ROWID",
        "CREATE TABLE IF NOT EXISTS delivery_dead_letters (trigger_id TEXT PRIMARY KEY, channel TEXT NOT NULL, "
        "at TEXT NOT NULL, letter BLOB NOT NULL)",
    )

    def count_delivered(self, rule: str, version: int, channel: str, trigger_id: str) -> bool:
        """A channel system acknowledged a trigger: the rule's ``delivered`` figure counts it
        once per trigger, however often it was delivered. Whether this call counted it."""
        with self.writing() as c:
            c.execute("SELECT 1 FROM delivered_triggers WHERE trigger_id = ?", (trigger_id,))
            if c.fetchone() is not None:
                return False
            c.execute("INSERT INTO delivered_triggers VALUES (?)", (trigger_id,))
            Contacts.add_figures(c, {(rule, version, channel, "delivered"): 1})
            return True

    def cursor(self, name: str) -> str | None:
        with self.reading() as c:
            c.execute("SELECT cursor FROM delivery_cursors WHERE name = ?", (name,))
            row = c.fetchone()
            return None if row is None else str(row[0])

    def save_cursor(self, name: str, cursor: str) -> None:
        with self.writing() as c:
            c.execute("INSERT INTO delivery_cursors VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET "
                      "cursor=excluded.cursor", (name, cursor))

    def store_dead_letter(self, trigger_id: str, channel: str, at: str, letter: bytes) -> None:
        """A trigger a channel's webhook gave up on (the same trigger twice is one letter)."""
        with self.writing() as c:
            c.execute("INSERT OR IGNORE INTO delivery_dead_letters VALUES (?,?,?,?)", (trigger_id, channel, at, letter))

    def dead_letters(self, channel: str | None, limit: int) -> list[bytes]:
        sql = "SELECT letter FROM delivery_dead_letters "
        params: list[Any] = []
        if channel is not None:
            sql += "WHERE channel = ? "
            params.append(channel)
        with self.reading() as c:
            c.execute(sql + "ORDER BY at DESC LIMIT ?", (*params, limit))
            return [bytes(r[0]) for r in c.fetchall()]
