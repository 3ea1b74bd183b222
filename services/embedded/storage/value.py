"""Customer value: the portfolio's RFM cells (kept per batch) and the fitted models."""

from __future__ import annotations

from typing import Any

from projections.value.rfm_cells import Cell, Change
from services.embedded.storage.base import Concern, ViewChanges

__all__ = ["Value"]


class Value(Concern):
    """``rfm_cells``: customers and revenue per (last purchase day, frequency bucket,
    monetary bucket), see projections.value.rfm_cells; ``value_models``: fitted models,
    written by the refit job (services.value), not by the runner."""

    TABLES = (
        "CREATE TABLE IF NOT EXISTS rfm_cells (r INTEGER, f INTEGER, m INTEGER, customers INTEGER NOT NULL, "
        "revenue INTEGER NOT NULL, PRIMARY KEY (r, f, m)) WITHOUT ROWID",
        "CREATE TABLE IF NOT EXISTS value_models (name TEXT PRIMARY KEY, body BLOB NOT NULL)",
    )

    def write(self, c: Any, changes: ViewChanges) -> None:
        c.executemany(
            "INSERT INTO rfm_cells VALUES (?,?,?,?,?) ON CONFLICT (r, f, m) DO UPDATE SET "
            "customers=customers+excluded.customers, revenue=revenue+excluded.revenue",
            [(*cell, change.customers, change.revenue) for cell, change in changes.rfm.items()],
        )

    def rfm_cells(self) -> dict[Cell, Change]:
        with self.reading() as c:
            c.execute("SELECT r, f, m, customers, revenue FROM rfm_cells WHERE customers != 0 OR revenue != 0")
            return {(r[0], r[1], r[2]): Change(r[3], r[4]) for r in c.fetchall()}

    def save_model(self, name: str, body: bytes) -> None:
        with self.writing() as c:
            c.execute("INSERT INTO value_models VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET body=excluded.body",
                      (name, body))

    def model(self, name: str) -> bytes | None:
        with self.reading() as c:
            c.execute("SELECT body FROM value_models WHERE name = ?", (name,))
            row = c.fetchone()
            return None if row is None else bytes(row[0])
