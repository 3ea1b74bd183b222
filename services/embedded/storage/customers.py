"""Customer views and timelines: the stored state of every customer, and its events by time."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from operator import itemgetter
from typing import Any

import orjson

from projections.view.document import VALUE_FIELDS
from services.embedded.storage.base import Concern, ViewChanges
from services.ports import History, history

__all__ = ["Customers", "VALUE_STATES_AFTER", "VALUE_STATES_RANGE", "VALUE_STATES_REST", "RANGE_BOUND", "value_page"]


_VALUE_PAGE = ("SELECT json_group_array(json_array(customer_id, json_object("
               + ", ".join(f"'{k}', json_extract(s, '$.{k}')" for k in VALUE_FIELDS)
               + "))) FROM (SELECT customer_id, CAST(state AS TEXT) AS s FROM customer_views WHERE {where})")
VALUE_STATES_AFTER = _VALUE_PAGE.format(where="customer_id > ? ORDER BY customer_id LIMIT ?")
VALUE_STATES_RANGE = _VALUE_PAGE.format(where="customer_id > ? AND customer_id <= ?")
VALUE_STATES_REST = _VALUE_PAGE.format(where="customer_id > ?")
"""The value fields (``VALUE_FIELDS``) of a page of customers, of the customers in a range
of ids (``after < id <= until``: both bounds on the index), or of every customer after an
id, as one JSON array: SQLite
parses the stored states in C, in one step without the interpreter lock (a row at a
time, a reading thread would wait for the lock per row)."""
RANGE_BOUND = "SELECT customer_id FROM customer_views WHERE customer_id > ? ORDER BY customer_id LIMIT 1 OFFSET ?"
"""The id ``n`` customers after ``after`` (``n`` = the OFFSET + 1): a range's upper bound."""


def value_page(raw: str) -> list[tuple[str, dict[str, Any]]]:
    """A page of the ``VALUE_STATES_*`` queries: (customer id, value
    fields) in customer-id order (as SQLite gives them; sorted, so a page's last id is
    always where the next one starts)."""
    return sorted(((row[0], row[1]) for row in orjson.loads(raw)), key=itemgetter(0))


class Customers(Concern):
    """``customer_views`` (the stored state as JSON, and the position that last wrote it) and
    ``timeline`` (customer → log positions by event time)."""

    TABLES = (
        # a rowid table: view states are kilobytes, too large for WITHOUT ROWID pages
        "CREATE TABLE IF NOT EXISTS customer_views ("
        "customer_id TEXT PRIMARY KEY, state BLOB NOT NULL, position INTEGER NOT NULL)",
        "CREATE TABLE IF NOT EXISTS timeline ("
        "customer_id TEXT, occurred_at TEXT, position INTEGER, "
        "PRIMARY KEY (customer_id, occurred_at, position)) WITHOUT ROWID",
    )

    def write(self, c: Any, changes: ViewChanges) -> None:
        c.executemany(
            "INSERT INTO customer_views VALUES (?,?,?) ON CONFLICT (customer_id) "
            "DO UPDATE SET state=excluded.state, position=excluded.position",
            [(cid, state, changes.position) for cid, state in changes.views.items()],
        )
        c.executemany("INSERT OR IGNORE INTO timeline VALUES (?,?,?)", changes.timeline)
        c.executemany("DELETE FROM customer_views WHERE customer_id=?", [(cid,) for cid in changes.removed])

    def states(self, customer_ids: Sequence[str]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        with self.reading() as c:
            for i in range(0, len(customer_ids), 500):
                chunk = list(customer_ids[i : i + 500])
                c.execute(f"SELECT customer_id, state FROM customer_views WHERE customer_id IN "
                          f"({','.join('?' * len(chunk))})", chunk)
                out.update((r[0], r[1]) for r in c.fetchall())
        return out

    def state(self, customer_id: str) -> bytes | None:
        return self.states([customer_id]).get(customer_id)

    def count(self) -> int:
        with self.reading() as c:
            c.execute("SELECT COUNT(*) FROM customer_views")
            return int(c.fetchone()[0])

    def timeline_positions(self, customers: Sequence[str], *, limit: int,
                           before: tuple[str, int] | None) -> list[tuple[str, int]]:
        """Newest first: (occurred_at, position) pairs strictly before ``before`` of the
        events of ``customers`` (the timeline is kept per natural customer: a merged
        customer's is the events of every customer shown as it)."""
        sql = f"SELECT occurred_at, position FROM timeline WHERE customer_id IN ({','.join('?' * len(customers))}) "
        params: list[Any] = list(customers)
        if before is not None:
            sql += "AND (occurred_at, position) < (?, ?) "
            params += list(before)
        sql += "ORDER BY occurred_at DESC, position DESC LIMIT ?"
        with self.reading() as c:
            c.execute(sql, [*params, limit])
            return [(r[0], r[1]) for r in c.fetchall()]

    def positions_of(self, customers: Sequence[str]) -> list[int]:
        """Every log position in the timelines of ``customers`` (natural customers), ascending."""
        with self.reading() as c:
            c.execute(f"SELECT position FROM timeline WHERE customer_id IN ({','.join('?' * len(customers))}) "
                      "ORDER BY position", list(customers))
            return [r[0] for r in c.fetchall()]

    def purchase_histories(self, currency: str) -> list[History]:
        """(first purchase µs, last purchase µs, distinct purchase days, mean repeat-purchase
        value in ``currency``) of every customer who bought, read by SQLite's JSON functions
        (no state is parsed in Python)."""
        spend = ("(SELECT json_extract(t.value, '$[{i}]') FROM json_each(s, '{path}') AS t "
                 "WHERE json_extract(t.value, '$[0]') = :currency)")
        with self.reading() as c:
            c.execute("SELECT json_extract(s, '$.purchase_days[0]'), json_extract(s, '$.purchase_days[1]'), "
                      "json_extract(s, '$.purchase_days[2]'), json_extract(s, '$.purchases'), "
                      f"{spend.format(i=1, path='$.currencies')}, {spend.format(i=2, path='$.currencies')}, "
                      f"{spend.format(i=1, path='$.purchase_days[3]')} "
                      "FROM (SELECT CAST(state AS TEXT) AS s FROM customer_views) "
                      "WHERE json_extract(s, '$.purchases') > 0",
                      {"currency": currency})
            return [history(days, first_day, bits, purchases, orders or 0, spent or "0", first_spend or "0")
                    for days, first_day, bits, purchases, orders, spent, first_spend in c.fetchall()]

    def value_states_after(self, after: str, limit: int) -> list[tuple[str, dict[str, Any]]]:
        """``states_after``, each state cut to its ``VALUE_FIELDS``, decoded."""
        with self.reading() as c:
            c.execute(VALUE_STATES_AFTER, (after, limit))
            return value_page(c.fetchone()[0])

    def states_after(self, after: str, limit: int) -> list[tuple[str, bytes]]:
        """(customer id, stored state) of the customers after ``after``, in customer-id order."""
        with self.reading() as c:
            c.execute("SELECT customer_id, state FROM customer_views WHERE customer_id > ? "
                      "ORDER BY customer_id LIMIT ?", (after, limit))
            return [(r[0], bytes(r[1])) for r in c.fetchall()]

    def purchases_by_currency(self) -> dict[str, tuple[int, int, Decimal]]:
        """Per currency: (customers, purchases, spend) over every stored view (SQLite's JSON
        functions; the spend summed exactly in Python, one row per customer and currency)."""
        out: dict[str, tuple[int, int, Decimal]] = {}
        with self.reading() as c:
            c.execute("SELECT json_extract(t.value, '$[0]'), json_extract(t.value, '$[1]'), "
                      "json_extract(t.value, '$[2]') "
                      "FROM customer_views, json_each(CAST(state AS TEXT), '$.currencies') AS t")
            for currency, count, revenue in c.fetchall():
                customers, purchases, spend = out.get(currency, (0, 0, Decimal(0)))
                out[currency] = (customers + (count > 0), purchases + count, spend + Decimal(revenue))  # net of refunds
        return out
