"""The automatic merge policy: which identity conflicts merge two customers by themselves.

Off by default. An identity conflict (``projections.batch.Conflict``) is an event whose
identifiers belong to customers shown apart: the event is folded onto the customer its
most trusted identifier names (the *survivor*), and each other customer owning some of
its identifiers (a *claimant*) may be merged into it, by one setting per identifier kind:

* ``never`` (the default for every kind): an identifier of this kind alone never merges;
  it still corroborates another kind's ``with_another``;
* ``with_another``: merges when the claimant owns this identifier **and** at least one
  other identifier of the same event (two matching identifiers);
* ``alone``: one identifier of this kind owned by the claimant is enough (for a verified
  external id, say).

So ``{"external_id": "alone", "email": "with_another"}`` merges when an event links a
verified external id to two customers, merges on a shared email only when a second
identifier agrees, and never merges on a shared phone alone.

A decision is data: ``decide`` gives, for one conflict and the merges in force, the merges
to append to the log (``PolicyMerge``), each with the rule that decided and the kinds of
identifiers that were its evidence (never their values). The merge id derives from the
event and the claimant, so deciding twice on the same conflict gives the same merge (the
log stores it once). Policy merges are appended *after* the conflicting event: the log
says what was decided, when and why, and a replay folds the decisions rather than
taking them again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from projections.merge import Merge, MergeRefused, Merges

__all__ = ["Kind", "Setting", "KINDS", "SETTINGS", "MergePolicy", "PolicyMerge", "Claim", "decide", "policy_merge_id"]

Kind = Literal["external_id", "email", "phone"]
KINDS: tuple[Kind, ...] = ("external_id", "email", "phone")
"""The identifier kinds the policy has a setting for (``projections.identity``)."""
Setting = Literal["never", "with_another", "alone"]
SETTINGS: tuple[Setting, ...] = ("never", "with_another", "alone")


@dataclass(frozen=True, slots=True)
class MergePolicy:
    """The setting of each identifier kind (absent: ``never``)."""

    rules: Mapping[Kind, Setting] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for kind, setting in self.rules.items():
            if kind not in KINDS:
                raise ValueError(f"the merge policy names identifier kinds {KINDS}, not {kind!r}")
            if setting not in SETTINGS:
                raise ValueError(f"the merge policy's setting for {kind} is one of {SETTINGS}, not {setting!r}")

    @property
    def active(self) -> bool:
        return any(setting != "never" for setting in self.rules.values())

    def setting(self, kind: Kind) -> Setting:
        return self.rules.get(kind, "never")


class Claim(NamedTuple):
    """One conflicting identifier: its kind, and the customer that owns it."""

    kind: str
    owner: str


class PolicyMerge(NamedTuple):
    """A merge the policy decided: ``absorbed`` into ``survivor``, on the event
    ``event_id``'s identifiers of ``kinds``, by ``rule`` ("email: with_another")."""

    merge_id: str
    survivor: str
    absorbed: str
    rule: str
    kinds: tuple[str, ...]
    event_id: str

    def merge(self) -> Merge:
        return Merge(self.merge_id, self.survivor, self.absorbed, self.reason, f"policy:{self.rule.split(':')[0]}")

    @property
    def reason(self) -> str:
        return (f"event {self.event_id} carries {', '.join(self.kinds)} identifiers of {self.absorbed} "
                f"(merge policy {self.rule})")


def policy_merge_id(event_id: str, absorbed: str) -> str:
    return "mrg_" + hashlib.sha256(f"policy/{event_id}/{absorbed}".encode()).hexdigest()[:24]


def decide(policy: MergePolicy, event_id: str, customer_id: str, claims: tuple[Claim, ...],
           merges: Merges) -> tuple[list[PolicyMerge], Merges]:
    """The merges the policy makes of one conflict, in claimant order, and the merges in
    force after them. ``customer_id``: the customer the event was folded onto; ``claims``:
    its identifiers other customers own. A claimant shown as the survivor already, or whose
    merge the graph refuses, is left as it is (the conflict stays listed)."""
    if not policy.active:
        return [], merges
    survivor = merges.root(customer_id)
    by_claimant: dict[str, list[str]] = {}
    for claim in claims:
        by_claimant.setdefault(merges.root(claim.owner), []).append(claim.kind)
    decided: list[PolicyMerge] = []
    for claimant in sorted(by_claimant):
        kinds = by_claimant[claimant]
        rule = _rule(policy, kinds)
        if rule is None or claimant == survivor:
            continue
        decision = PolicyMerge(policy_merge_id(event_id, claimant), survivor, claimant, rule,
                               tuple(sorted(set(kinds))), event_id)
        try:
            merges = merges.merge(decision.merge())
        except MergeRefused:
            continue
        decided.append(decision)
    return decided, merges


def _rule(policy: MergePolicy, kinds: list[str]) -> str | None:
    """The rule that merges a claimant owning the event's identifiers of ``kinds`` (one
    entry per identifier), or None. ``alone`` first: it needs no corroboration."""
    for kind in KINDS:
        if kind in kinds and policy.setting(kind) == "alone":
            return f"{kind}: alone"
    if len(kinds) >= 2:
        for kind in KINDS:
            if kind in kinds and policy.setting(kind) == "with_another":
                return f"{kind}: with_another"
    return None
