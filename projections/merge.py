"""Customer merges as data: which customers are shown as one, and how to undo it.

A merge never rewrites an event, an identifier link or another merge. Every event keeps
the customer identity resolution gave it (its *natural* customer: ``projections.identity``
against the identifier index), and the merges form a forest: each absorbed customer
points to the customer it was merged into. A customer's *root* is the end of that chain,
and every view is the fold of the events whose natural customer has that root, as if
they had always been one customer; an event's identifiers owned by customers of the same
root are no conflict. Undoing a merge removes one edge: both sides become what the
events without that merge make them, exactly, because nothing else was changed.

Business rules (each refusal is a ``MergeRefused`` with a code the API answers with):

* ``same_customer``: a customer cannot be merged into itself, nor into a customer it is
  already shown as (its own root);
* ``already_merged``: an absorbed customer is merged once; to move it, undo that merge
  first (the answer names the customer it is merged into);
* ``survivor_merged``: the survivor must be a root; a merge into a customer that was
  itself absorbed would build a chain nobody asked for (the answer names the root to
  merge into instead);
* ``unknown_merge``: undo names a merge not in force (never made, or already undone).

Chains come only from merging a root that has absorbed others (A into B, then B into
C: A and B are shown as C); undoing B into C leaves A in B. A cycle cannot be built:
a survivor is always a root and the absorbed customer is never the survivor's root.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = ["Merge", "MergeRefused", "Merges"]


class Merge(NamedTuple):
    """One merge: ``absorbed`` is shown as ``survivor`` from now on."""

    merge_id: str
    survivor: str
    absorbed: str
    reason: str
    actor: str  # the operator's key name, or "policy:<rule id>"


class MergeRefused(ValueError):
    def __init__(self, code: str, message: str, customer_id: str | None = None):
        super().__init__(message)
        self.code, self.customer_id = code, customer_id


@dataclass(frozen=True, slots=True)
class Merges:
    """The merges in force: ``into`` maps each absorbed customer to the merge that absorbed it."""

    into: Mapping[str, Merge] = field(default_factory=dict)
    _roots: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)  # filled on first read

    @classmethod
    def of(cls, merges: Iterable[Merge]) -> Merges:
        """The merges in force after ``merges`` in order, each checked as ``merge`` checks it."""
        graph = cls()
        for m in merges:
            graph = graph.merge(m)
        return graph

    def root(self, customer_id: str) -> str:
        """The customer ``customer_id`` is shown as (itself when not absorbed)."""
        seen = 0
        while (m := self.into.get(customer_id)) is not None:
            customer_id, seen = m.survivor, seen + 1
            if seen > len(self.into):  # cannot happen: ``merge`` refuses what would loop
                raise RuntimeError("a merge cycle")
        return customer_id

    def roots(self) -> Mapping[str, str]:
        """Every absorbed customer's root: what a fold maps natural customers through
        (computed once per graph, when first read: the runner reads it for every batch)."""
        if len(self._roots) != len(self.into):
            self._roots.update({absorbed: self.root(absorbed) for absorbed in self.into})
        return self._roots

    def group(self, root: str) -> frozenset[str]:
        """Every customer shown as ``root``, itself included."""
        return frozenset({root, *(c for c, r in self.roots().items() if r == root)})

    def merge(self, m: Merge) -> Merges:
        if m.absorbed in self.into:
            raise MergeRefused("already_merged", f"customer {m.absorbed} is already merged into "
                               f"{self.into[m.absorbed].survivor} (merge {self.into[m.absorbed].merge_id})",
                               self.into[m.absorbed].survivor)
        root = self.root(m.survivor)
        if root != m.survivor:
            raise MergeRefused("survivor_merged", f"customer {m.survivor} is merged into {root}: merge into "
                               f"{root}", root)
        if m.absorbed == m.survivor:
            raise MergeRefused("same_customer", f"customer {m.absorbed} cannot be merged into itself")
        if any(x.merge_id == m.merge_id for x in self.into.values()):
            raise MergeRefused("duplicate_merge", f"merge {m.merge_id} is already in force")
        return Merges({**self.into, m.absorbed: m})

    def undo(self, merge_id: str) -> tuple[Merges, Merge]:
        """The merges without ``merge_id``, and the merge undone."""
        for absorbed, m in self.into.items():
            if m.merge_id == merge_id:
                return Merges({k: v for k, v in self.into.items() if k != absorbed}), m
        raise MergeRefused("unknown_merge", f"no merge {merge_id} is in force")
