"""Gauges both runtimes set from their stores when scraped: customers per stage, per segment."""

from __future__ import annotations

from projections.lifecycle.stages import STAGES
from projections.segments.membership import SegmentSet
from services import metrics

__all__ = ["set_stage_gauges", "set_segment_gauges"]


def set_stage_gauges(counts: dict[str, int]) -> None:
    for stage in STAGES:
        metrics.child(metrics.LIFECYCLE_CUSTOMERS, stage).set(counts.get(stage, 0))


def set_segment_gauges(definitions: SegmentSet, counts: dict[str, int]) -> None:
    for s in definitions.segments:
        metrics.child(metrics.SEGMENT_CUSTOMERS, s.id).set(counts.get(s.id, 0))
