"""What webhook delivery stores per channel: its cursor in the feed and its dead letters.

The runtime provides a ``DeliveryLedger`` per channel (embedded: SQLite beside the
views; scale-out: Redis); ``MemoryLedger`` is the reference shape, used by the tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["DeliveryDeadLetter", "DeliveryLedger", "MemoryLedger"]


@dataclass(frozen=True, slots=True)
class DeliveryDeadLetter:
    trigger_id: str  # storing the same trigger_id twice (a crash before the cursor moved) is one letter
    channel: str
    outcome: str  # failed_permanent | dead_lettered
    status: int | None  # the last HTTP status, None when there was no answer
    reason: str
    attempts: int
    at: str  # when it was given up, ISO 8601 UTC
    trigger: dict[str, Any]  # the document, for replay


class DeliveryLedger(Protocol):
    """What a dispatcher stores, per channel: provided by the runtime.

    After a 2xx, ``delivered`` then ``save_cursor``; after giving up, ``dead_letter`` then
    ``save_cursor``. A crash between the two repeats the first for the same trigger."""

    async def load_cursor(self) -> str | None: ...

    async def save_cursor(self, cursor: str) -> None: ...

    async def delivered(self, trigger: dict[str, Any]) -> None: ...

    async def dead_letter(self, letter: DeliveryDeadLetter) -> None: ...


@dataclass
class MemoryLedger:
    """A ledger in memory (tests, and the shape a stored ledger follows)."""

    cursor: str | None = None
    letters: list[DeliveryDeadLetter] = field(default_factory=list)
    saved: list[str] = field(default_factory=list)  # every cursor saved, in order
    acknowledged: list[str] = field(default_factory=list)  # trigger ids delivered, in order

    async def load_cursor(self) -> str | None:
        return self.cursor

    async def save_cursor(self, cursor: str) -> None:
        self.cursor = cursor
        self.saved.append(cursor)

    async def delivered(self, trigger: dict[str, Any]) -> None:
        self.acknowledged.append(str(trigger.get("trigger_id")))

    async def dead_letter(self, letter: DeliveryDeadLetter) -> None:
        self.letters.append(letter)
