"""Every purchase the views have folded, attributed to its customer: what the purchase
model's calibration/holdout validation refits on (``services.value.validation``).

The log holds the purchases, the views' timeline index says which customer each log
position was folded into (identity resolution happened in the fold), so the two read
together give (customer, instant) per purchase without folding anything again. Read
while the platform runs: both are read in their own read transactions.
"""

from __future__ import annotations

import orjson

from projections.codec import instant
from projections.merge import Merges
from projections.view.state import micros
from services.embedded.eventlog import TouchpointLog
from services.embedded.storage.unit import ViewStore

__all__ = ["purchases"]


def purchases(log: TouchpointLog, store: ViewStore) -> tuple[list[str], list[int]]:
    """(customer id, purchase instant µs) of every purchase the views have folded, each as
    the customer it is shown as (merges included)."""
    merges = Merges.of(store.identity.merges_in_force())
    with store.datastore.transaction(commit=False) as c:
        c.execute("SELECT position, customer_id FROM timeline")
        owner = {p: merges.root(cid) for p, cid in c.fetchall()}
    after, who, when = 0, [], []
    while page := log.read(after, 10_000):
        for record in page:
            if record.position in owner and record.topic.startswith("touchpoint/purchase@"):
                who.append(owner[record.position])
                when.append(micros(instant(orjson.loads(record.state)["occurred_at"])))
        after = page[-1].position
    return who, when
