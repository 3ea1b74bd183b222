"""What differs between two stored states: field paths, for ``touchstream replay``'s report.

``differences(a, b)`` compares two JSON documents (the stored state,
``projections.view.document.to_state``, parsed) structurally and names every leaf where
they part: ``touchpoints``, ``contact.last_fired[0]``, ``lifecycle[8][2][1]``. Paths are
the JSON's own: a dict key after a dot, a list index in brackets (the stored state keeps
records as positional lists). A list whose lengths differ is named once, as a whole:
comparing its elements index by index after an insertion would name every one after it.
A value whose JSON type differs (``1`` and ``1.0``, ``true`` and ``1``, ``null`` and
anything) differs.

``Comparison`` gathers a replay's verdicts: counts of customers compared and differing,
and at most ``MAX_CUSTOMERS`` differing customers with at most ``MAX_PATHS`` paths each,
so a report stays readable whatever went wrong. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = ["differences", "Comparison", "MAX_CUSTOMERS", "MAX_PATHS"]

MAX_CUSTOMERS = 20  # differing customers named in a report
MAX_PATHS = 10  # field paths named per customer


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The paths at which ``a`` and ``b`` differ, in document order (``a``'s keys first,
    then keys only ``b`` has); [] when they are structurally equal."""
    out: list[str] = []
    _walk(a, b, "", out)
    return out


def _walk(a: Any, b: Any, path: str, out: list[str]) -> None:
    if type(a) is not type(b):
        out.append(path)
    elif isinstance(a, dict):
        for key in [*a, *(k for k in b if k not in a)]:
            inner = f"{path}.{key}" if path else str(key)
            if key not in a or key not in b:
                out.append(inner)
            else:
                _walk(a[key], b[key], inner, out)
    elif isinstance(a, list):
        if len(a) != len(b):
            out.append(path)
        else:
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                _walk(x, y, f"{path}[{i}]", out)
    elif a != b:
        out.append(path)


@dataclass
class Comparison:
    """Customers compared (replayed state against live state, as stored bytes) and what
    differs. ``compare`` returns whether the two are identical."""

    compared: int = 0
    differing: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)

    def compare(self, customer_id: str, replayed: bytes | None, live: bytes | None) -> bool:
        self.compared += 1
        if replayed == live:
            return True
        self.differing += 1
        if len(self.examples) < MAX_CUSTOMERS:
            self.examples.append(describe(customer_id, replayed, live))
        return False

    def report(self) -> dict[str, Any]:
        return {"differing_customers": self.differing, "differences": self.examples}


def describe(customer_id: str, replayed: bytes | None, live: bytes | None) -> dict[str, Any]:
    """One differing customer as the report names it."""
    if replayed is None or live is None:
        return {"customer_id": customer_id, "missing_from": "replay" if replayed is None else "live"}
    try:
        a, b = orjson.loads(replayed), orjson.loads(live)
    except orjson.JSONDecodeError:
        return {"customer_id": customer_id, "fields": [], "note": "the live state is not JSON"}
    if not isinstance(a, dict) or not isinstance(b, dict):
        return {"customer_id": customer_id, "fields": [], "note": "the live state is not a JSON object"}
    paths = differences(a, b)
    entry: dict[str, Any] = {"customer_id": customer_id, "fields": paths[:MAX_PATHS], "fields_differing": len(paths)}
    if not paths:
        entry["note"] = "the same JSON, encoded differently"
    return entry
