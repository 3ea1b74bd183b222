"""Every customer's value card as CSV, on every core: the embedded runtime's
``GET /v1/value/cards?format=csv``.

A million rows of figures are CPU work in Python (decimal money, quintile scores, the
seed formula), about 30 µs a customer with the SQLite read, on one core whatever the
threads: so the export is cut into ranges of customer ids (``PAGE`` customers each, the
bounds read from the primary key's index) and each range is read and written as CSV by a
worker process (one per core) with its own read-only connection. The API process only
finds the bounds and streams the workers' bytes in range order, so the rows come in
customer-id order as the single-process export gives them.

The ranges partition the id space (``after < id <= until``, the last one open), so a
customer stored while the export runs is in exactly one range: nothing is missed or
repeated. Each range is one read, as each page of the single-process export is (the
export is not one snapshot: a customer is shown as of the moment their range is read).

An export of one range or less (a small portfolio) is written in the API process: no
worker is started for it. The workers are started on the first large export, from a
fork server (``forkserver``: a clean process, not a fork of the server's threads), and
stopped with the platform.
"""

from __future__ import annotations

import asyncio
import csv
import io
import multiprocessing
import os
import sqlite3
from collections.abc import AsyncIterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from projections.value.rfm_population import Quintiles
from services.embedded.storage.customers import RANGE_BOUND, VALUE_STATES_RANGE, VALUE_STATES_REST, value_page
from services.settings import Settings
from services.value.export import PAGE, csv_header, flat_rows
from services.value.job import ValueModel
from services.value.service import TimeBase

__all__ = ["ParallelCsvExport", "range_csv"]

_connections: dict[str, sqlite3.Connection] = {}


def _read_only(path: str) -> sqlite3.Connection:
    # a file: URI percent-encodes the path: a directory named with '?' or '#' stays a path
    return sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, timeout=30)


def _connection(path: str) -> sqlite3.Connection:
    """The worker's read-only connection to the view store (one per process)."""
    if path not in _connections:
        _connections[path] = _read_only(path)
    return _connections[path]


def range_csv(path: str, after: str, until: str | None, model: ValueModel | None, cuts: Quintiles | None,
              base: TimeBase, settings: Settings) -> bytes:
    """The CSV rows (no header) of the customers ``after < id <= until`` (None: no upper
    bound) of the view store at ``path``, in customer-id order."""
    query, bounds = (VALUE_STATES_REST, (after,)) if until is None else (VALUE_STATES_RANGE, (after, until))
    page = value_page(_connection(path).execute(query, bounds).fetchone()[0])
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(flat_rows(page, model, cuts, base, settings))
    return buffer.getvalue().encode()


class ParallelCsvExport:
    """The worker processes of the embedded CSV export, started on first use."""

    def __init__(self, views_path: Path, workers: int | None = None):
        self.path = str(views_path)
        self.workers = workers or os.cpu_count() or 1
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["services.embedded.value_export"])
            self._pool = ProcessPoolExecutor(self.workers, mp_context=context)
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _bound(self, after: str) -> str | None:
        """The last id of the range after ``after`` (None: the rest is one range)."""
        c = _read_only(self.path)
        try:
            found = c.execute(RANGE_BOUND, (after, PAGE - 1)).fetchone()
        finally:
            c.close()
        return None if found is None else found[0]

    async def csv(self, model: ValueModel | None, cuts: Quintiles | None, base: TimeBase,
                  settings: Settings) -> AsyncIterator[bytes]:
        yield csv_header()
        terms = (model, cuts, base, settings)
        until = await asyncio.to_thread(self._bound, "")
        if until is None:  # one range: no worker needed
            yield await asyncio.to_thread(range_csv, self.path, "", None, *terms)
            return
        pool = self._executor()
        pending: list[asyncio.Future[bytes]] = []  # ranges in flight, in order
        after: str | None = ""
        try:
            while after is not None or pending:
                while after is not None and len(pending) < 2 * self.workers:
                    if until is None and after:
                        until = await asyncio.to_thread(self._bound, after)
                    future: Future[bytes] = pool.submit(range_csv, self.path, after, until, *terms)
                    pending.append(asyncio.wrap_future(future))
                    after, until = until, None
                yield await pending.pop(0)
        finally:
            for waiting in pending:
                waiting.cancel()
