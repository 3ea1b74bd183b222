"""``touchstream replay`` in the embedded runtime: rebuild every view from the log into a
fresh store and compare it with the live views at one snapshot.

The live store is read in ONE read transaction held for the whole run (SQLite WAL: the
server goes on committing, this reader keeps seeing the commit it started at): its
position is where the rebuild stops, and its states, read at the end, are compared with
the rebuilt ones customer by customer. So a running server never makes the comparison
lie, and a difference names the customer and the field paths that differ
(``services.state_diff``). The log's head beyond the snapshot is lag, reported as
information. The rebuild is the embedded adapter itself (``ProjectionRunner``).
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from services.embedded.eventlog import TouchpointLog
from services.embedded.runner import ProjectionRunner
from services.embedded.storage.unit import ViewStore, digest_row
from services.progress import polled
from services.settings import Settings
from services.state_diff import Comparison

__all__ = ["verify", "pairs"]


def verify(settings: Settings, into: Path | None = None) -> dict[str, Any]:
    """The report of a rebuild compared with the live views (``identical``: no difference)."""
    log = TouchpointLog(settings.log_path)
    live = ViewStore(settings.views_path) if settings.views_path.exists() else None
    with ExitStack() as held:
        snapshot = held.enter_context(live.snapshot()) if live is not None else None
        head = log.head()
        target = snapshot.position if snapshot is not None else head
        scratch = Path(held.enter_context(tempfile.TemporaryDirectory()))
        fresh = ViewStore(into or scratch / "views.sqlite")
        runner = ProjectionRunner(log, fresh, settings.fold_config(), batch=5000, until=target)
        started = time.perf_counter()
        with polled("replaying the log", target, lambda: runner.position):
            runner.catch_up()
        seconds = time.perf_counter() - started
        comparison = Comparison()
        rebuilt_digest, live_digest = hashlib.sha256(), hashlib.sha256()
        rebuilt_customers = live_customers = 0
        with fresh.snapshot() as rebuilt:
            live_states = snapshot.states() if snapshot is not None else iter(())
            for customer_id, replayed, current in pairs(rebuilt.states(), live_states):
                if replayed is not None:
                    rebuilt_customers += 1
                    rebuilt_digest.update(digest_row(customer_id, replayed))
                if current is not None:
                    live_customers += 1
                    live_digest.update(digest_row(customer_id, current))
                if snapshot is not None:
                    comparison.compare(customer_id, replayed, current)
        dead = fresh.dead_letters.count()
        fresh.datastore.close()
    # a live position the log does not reach: the views hold what the log lost
    ahead = {"log": {"stored": target, "end": runner.position}} if runner.position < target else {}
    return {
        "runtime": "embedded",
        "identical": comparison.differing == 0 and not ahead,
        "position": runner.position,
        "lag": {"log": {"stored": target, "end": head}} if head > target else {},
        "ahead": ahead,
        "customers": rebuilt_customers,
        "live_customers": live_customers,
        **comparison.report(),
        "unsettled_customers": 0,
        "unsettled": [],
        "records_dead": dead,
        "events_per_second": round(target / seconds) if seconds and target else None,
        "seconds": round(seconds, 3),
        "rebuilt_digest": rebuilt_digest.hexdigest(),
        "live_digest": live_digest.hexdigest() if snapshot is not None else None,
    }


def pairs(a: Iterable[tuple[str, bytes]], b: Iterable[tuple[str, bytes]]) -> Iterator[tuple[str, bytes | None,
                                                                                            bytes | None]]:
    """Merge two (customer id, state) sequences sorted by customer id: (id, a's, b's), None
    where one has no such customer."""
    left, right = iter(a), iter(b)
    x, y = next(left, None), next(right, None)
    while x is not None or y is not None:
        if y is None or (x is not None and x[0] < y[0]):
            assert x is not None
            yield x[0], x[1], None
            x = next(left, None)
        elif x is None or y[0] < x[0]:
            yield y[0], None, y[1]
            y = next(right, None)
        else:
            yield x[0], x[1], y[1]
            x, y = next(left, None), next(right, None)
