"""Identity resolution: which customer an event is about.

Business rule (deterministic, never a silent merge):

* an event that names ``customer_id`` is about that customer;
* otherwise a known identifier (external id, email, phone — in that order of trust)
  maps to its customer; unknown identifiers alone create a new customer whose id is
  derived from the event id, so a replay creates the same id;
* identifiers the event carries that are not yet known are linked to the customer;
* identifiers already linked to a *different* customer stay where they are: the event is
  an identity conflict, recorded and reported, and merging is left to a person (or a
  later merge command). The view folds the event without the conflicting identifiers.
* merges (``projections.merge``) change none of this: the customer decided above is the
  event's *natural* customer, links go to it, and the event is shown as the natural
  customer's root (``roots``: absorbed customer → root); an identifier owned by a
  customer of the same root is no conflict.

The caller supplies what it knows of the identifier index (``known``) for the event's
identifiers; the function returns the decision and the links to add.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace

from projections.touchpoints import CustomerRef, Touchpoint

__all__ = ["Identifier", "Resolution", "identifiers_of", "new_customer_id", "resolve", "settled"]

Identifier = tuple[str, str]
"""(kind, value): ("email", "ana@example.com"), ("phone", "+33612345678"),
("external_id", "crm:42"), ("customer_id", "c-1")."""

_NAMESPACE = uuid.UUID("6f1c3f3e-1d8c-4f55-9c86-6d2a5c1b7e10")


@dataclass(frozen=True, slots=True)
class Resolution:
    customer_id: str  # the customer the event is shown as: its natural customer's root
    created: bool
    links: tuple[Identifier, ...]  # identifiers to link to the natural customer
    conflicts: tuple[tuple[Identifier, str], ...]  # identifiers owned by another customer (of another root)
    folded: Touchpoint  # the event as the view folds it (conflicting identifiers removed)
    natural: str  # the customer identity resolution gives without merges


def identifiers_of(ref: CustomerRef) -> tuple[Identifier, ...]:
    """The event's identifiers in order of trust: external ids, emails, phones."""
    return (
        *(("external_id", f"{x.system}:{x.id}") for x in ref.external_ids),
        *(("email", e) for e in ref.emails),
        *(("phone", p) for p in ref.phones),
    )


def new_customer_id(event_id: str) -> str:
    return "cus_" + uuid.uuid5(_NAMESPACE, event_id).hex[:24]


def resolve(event: Touchpoint, known: Mapping[Identifier, str], roots: Mapping[str, str] | None = None) -> Resolution:
    ref = event.customer
    identifiers = identifiers_of(ref)
    owners = [known[i] for i in identifiers if i in known]
    created = False
    if ref.customer_id is not None:
        natural = ref.customer_id
    elif owners:
        natural = owners[0]  # the most trusted known identifier decides
    else:
        natural = new_customer_id(event.event_id)
        created = True
    links = tuple(i for i in identifiers if i not in known)
    if not roots:
        conflicts = tuple((i, known[i]) for i in identifiers if i in known and known[i] != natural)
        return Resolution(natural, created, links, conflicts, _folded(event, conflicts), natural)
    shown = roots.get(natural, natural)
    conflicts = tuple((i, known[i]) for i in identifiers if i in known and roots.get(known[i], known[i]) != shown)
    return Resolution(shown, created, links, conflicts, _folded(event, conflicts), natural)


def settled(event: Touchpoint, customer_id: str, conflicts: Mapping[Identifier, str],
            roots: Mapping[str, str] | None = None) -> Resolution:
    """A resolution decided earlier by ``resolve`` (the scale-out runtime resolves at
    ingest and carries the decision with the record), re-applied to the event: the same
    folded event, so a processor needs no identifier index and a replay of the record
    gives the same view. ``links`` are all the event's identifiers not in conflict
    (linking an identifier already linked to the same customer is a no-op)."""
    identifiers = identifiers_of(event.customer)
    links = tuple(i for i in identifiers if i not in conflicts)
    roots = roots or {}
    shown = roots.get(customer_id, customer_id)
    clashing = tuple((i, conflicts[i]) for i in identifiers
                     if i in conflicts and roots.get(conflicts[i], conflicts[i]) != shown)
    return Resolution(shown, False, links, clashing, _folded(event, clashing), customer_id)


def _folded(event: Touchpoint, conflicts: tuple[tuple[Identifier, str], ...]) -> Touchpoint:
    return event if not conflicts else replace(event, customer=_without(event.customer, {i for i, _ in conflicts}))


def _without(ref: CustomerRef, dropped: set[Identifier]) -> CustomerRef:
    return CustomerRef(
        customer_id=ref.customer_id,
        emails=tuple(e for e in ref.emails if ("email", e) not in dropped),
        phones=tuple(p for p in ref.phones if ("phone", p) not in dropped),
        external_ids=tuple(
            x for x in ref.external_ids if ("external_id", f"{x.system}:{x.id}") not in dropped
        ),
    )
