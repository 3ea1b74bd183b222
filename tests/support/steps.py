"""Folding step by step in tests: each step's decisions gathered in one ``Decisions``."""

from __future__ import annotations

from projections.nbc.engine import Decisions, Step
from projections.view.fold import CustomerView

__all__ = ["collect"]


def collect(into: Decisions, step: Step) -> CustomerView:
    """The step's view; its decisions appended to ``into``."""
    into.triggers += step.decisions.triggers
    into.suppressions += step.decisions.suppressions
    into.outcomes += step.decisions.outcomes
    return step.view
