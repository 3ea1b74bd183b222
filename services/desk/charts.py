"""Chart geometry for the desk's portfolio page: plain numbers the templates draw as SVG.

No chart library and no script: each function turns figures into shapes (positions,
sizes, the share a shade stands for) and the template draws them; every chart also has
its figures in a table beside it, for screen readers and for reading exact values.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

__all__ = ["bars", "heat", "grouped_bars"]

BAR_HEIGHT = 22
GAP = 6


def bars(rows: Sequence[tuple[str, float]], width: int = 420) -> dict[str, Any]:
    """Horizontal bars, one per (label, value), longest for the largest value."""
    top = max((value for _, value in rows), default=0) or 1
    shapes = [{"label": label, "value": value, "y": i * (BAR_HEIGHT + GAP),
               "width": round(width * value / top, 1)} for i, (label, value) in enumerate(rows)]
    return {"bars": shapes, "width": width, "height": max(1, len(rows)) * (BAR_HEIGHT + GAP)}


def grouped_bars(rows: Sequence[tuple[str, Sequence[tuple[str, float]]]], width: int = 420) -> dict[str, Any]:
    """For each label, one thin bar per (series, value), on one scale."""
    top = max((v for _, series in rows for _, v in series), default=0) or 1
    per = max((len(series) for _, series in rows), default=1)
    band = per * 12 + GAP * 2
    groups = []
    for i, (label, series) in enumerate(rows):
        groups.append({"label": label, "y": i * band, "bars": [
            {"series": name, "value": value, "y": i * band + GAP + j * 12, "width": round(width * value / top, 1)}
            for j, (name, value) in enumerate(series)]})
    return {"groups": groups, "width": width, "height": max(1, len(rows)) * band}


def heat(cells: dict[tuple[Any, Any], float], rows: Sequence[Any], columns: Sequence[Any]) -> dict[str, Any]:
    """A grid of cells shaded by their share of the largest value (0 to 1)."""
    top = max(cells.values(), default=0) or 1
    return {"rows": [{"label": r, "cells": [{"column": c, "value": cells.get((r, c), 0),
                                                "shade": round(float(Decimal(str(cells.get((r, c), 0))) /
                                                                     Decimal(str(top))), 3)}
                                               for c in columns]} for r in rows],
            "columns": list(columns)}
