"""A customer as the events up to an instant describe them: the audit view.

``as_of_view`` folds a customer's own events (those of every customer shown as it) with
the core's one batch decider (``projections.batch.fold_batch``) in **event time**: sorted
by when they happened, each deadline crossed on the way applied at its own instant, then
every deadline up to ``until`` — the lifecycle at that instant, whatever clock ticks the
live views happened to receive. The caller chooses the events: those that had happened by
the instant (``as_of``), or those the platform had received by then or by a log position
(``known_at``: late events excluded), or both.

Identifiers an event carried that the customer does not own (an identity conflict: they
belong to another customer) are folded as the live view folds them: without them.
Deterministic: the same events and instant give the same view, on either runtime.
"""

from __future__ import annotations

from collections.abc import Iterable

from projections.batch import FoldConfig, Touch, fold_batch
from projections.identity import Identifier, identifiers_of
from projections.touchpoints import Touchpoint
from projections.view.fold import CustomerView, micros

__all__ = ["as_of_view", "own_identifiers"]


def own_identifiers(view: CustomerView) -> frozenset[Identifier]:
    """The identifiers a view holds, as identity resolution names them."""
    return frozenset({*(("email", e) for e in view.emails), *(("phone", p) for p in view.phones),
                      *(("external_id", f"{system}:{id_}") for system, id_ in view.external_ids)})


def as_of_view(customer_id: str, events: Iterable[tuple[int, Touchpoint]], own: frozenset[Identifier],
               config: FoldConfig, *, until: int) -> CustomerView | None:
    """The view of ``customer_id`` from ``events`` ((position, event) pairs), settled at
    ``until`` (µs); None when no event is given."""
    ordered = sorted(events, key=lambda pair: (micros(pair[1].occurred_at), pair[0]))
    touches = [Touch(position, event, customer_id,
                     {i: "" for i in identifiers_of(event.customer) if i not in own})
               for position, event in ordered]
    if not touches:
        return None
    return fold_batch({}, touches, config, event_time=True, settle_until=until).views.get(customer_id)
