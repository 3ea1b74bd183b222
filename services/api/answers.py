"""What each read route answers (200), as JSON Schema for the OpenAPI document.

The top level of every answer is stated exactly (its keys, required, and their types);
nested documents are described and left open where their own contract lives elsewhere
(the 360° view: ``schemas/view``; triggers: docs/TRIGGERS.md). The e2e suite validates
real answers from a running server against these schemas, so they cannot drift.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ANSWERS", "ANSWER_SCHEMAS"]


def _object(required: dict[str, Any], description: str) -> dict[str, Any]:
    return {"type": "object", "description": description, "required": sorted(required), "properties": required}


_LIST = {"type": "array", "items": {"type": "object"}}
_CURSOR = {"type": ["string", "null"], "description": "pass back to continue; stays put when nothing is new"}
_INSTANT = {"type": "string", "format": "date-time"}
_COUNT = {"type": "integer", "minimum": 0}

ANSWER_SCHEMAS: dict[str, dict[str, Any]] = {
    "CustomerView": {**_object({
        "customer_id": {"type": "string"}, "identity": {"type": "object"}, "profile": {"type": "object"},
        "first_seen": {"type": ["string", "null"]}, "last_seen": {"type": ["string", "null"]},
        "touchpoints": _COUNT, "channels": {"type": "object"}, "recent": _LIST, "purchases": {"type": "object"},
        "service_cases": {"type": "object"}, "satisfaction": {"type": "object"}, "consents": _LIST,
        "lifecycle": {"type": ["object", "null"]}, "contact_pressure": {"type": "object"},
        "next_best_contact": {"type": "object"}, "value": {"type": "object"},
    }, "the 360° view (published document: schemas/view/customer_view), with contact pressure, "
       "next best contact and the value card computed at read time")},
    "TimelinePage": _object({"customer_id": {"type": "string"}, "events": _LIST, "next_cursor": _CURSOR},
                            "touchpoints from the log, newest event time first, each with its position"),
    "Conflicts": _object({"conflicts": _LIST}, "touchpoints whose identifiers belong to different customers"),
    "DeadLetters": _object({"dead_letters": _LIST}, "records the projection or a webhook could not apply"),
    "TransitionsPage": _object({"transitions": _LIST, "next_cursor": _CURSOR}, "lifecycle transitions, oldest first"),
    "LifecycleFigures": _object({
        "from": _INSTANT, "to": _INSTANT, "stages": {"type": "object", "additionalProperties": _COUNT},
        "customers": _COUNT, "transitions": _COUNT, "matrix": {"type": "object"},
        "median_dwell_seconds": {"type": "object", "additionalProperties": {"type": "number"}},
    }, "customers per stage now; transitions in the window, their matrix and median dwell"),
    "Tick": _object({"at": _INSTANT, "position": {"type": "integer"}}, "the tick appended and its log position"),
    "TriggerFigures": _object({"rules": _LIST, "totals": {"type": "object", "additionalProperties": _COUNT}},
                              "per rule and version: fired, suppressed, delivered, reached, converted"),
    "TriggersPage": _object({"triggers": _LIST, "next_cursor": _CURSOR}, "triggers, oldest first (docs/TRIGGERS.md)"),
    "PurchaseModel": {"type": "object", "description": "the fitted BG/NBD model the views use (docs/VALUE.md)"},
    "ValueValidation": _object({
        "parameters": {"type": "object"}, "unit": {"const": "week"}, "customers": _COUNT,
        "holdout_weeks": {"type": "number"}, "rows": _LIST, "actual": {"type": "number"},
        "predicted": {"type": "number"},
    }, "the calibration/holdout table: repeat purchases predicted and seen in the holdout, per number of "
       "calibration repeat purchases (docs/VALUE.md); format=svg answers its chart"),
    "RfmGrid": _object({"currency": {"type": "string"}, "customers": _COUNT, "cuts": {"type": ["object", "null"]},
                        "segments": {"type": "object"}, "squares": _LIST},
                       "the portfolio's RFM cuts, segments and squares (docs/VALUE.md)"),
    "ValueFigures": _object({"currency": {"type": "string"}, "pareto": {"type": "object"},
                             "lifetime_value": {"type": "object"}},
                            "the Pareto curve of revenue and the lifetime-value distribution"),
    "SegmentFigures": _object({"from": _INSTANT, "to": _INSTANT, "segments": _LIST},
                              "each segment's members now, entries and exits in the window"),
    "SegmentChangesPage": _object({"changes": _LIST, "next_cursor": _CURSOR},
                                  "segment entries and exits, oldest first"),
    "Health": _object({"status": {"const": "ok"}, "runtime": {"type": "string"}}, "the process answers"),
    "Readiness": _object({"ready": {"type": "boolean"}, "checks": {"type": "object"},
                          "log_position": {"type": ["integer", "null"]}, "view_position": {"type": ["integer", "null"]},
                          "check_seconds": {"type": "number"}}, "whether to send traffic here (also the 503 body)"),
}

_MERGE_PENDING = {"merge_id": {"type": "string"}, "position": {"type": "integer"}, "status": {"const": "pending"}}
ANSWER_SCHEMAS["Merge"] = {**_object({
    "merge_id": {"type": "string"}, "survivor": {"type": "string"}, "absorbed": {"type": "string"},
    "cause": {"enum": ["operator", "conflict", "policy"]}, "reason": {"type": "string"}, "actor": {"type": "string"},
    "evidence": {"type": ["object", "null"]}, "position": {"type": "integer"}, "at": _INSTANT,
    "in_force": {"type": "boolean"}, "undone": {"type": ["object", "null"]},
}, "a merge as recorded (docs/IDENTITY.md): who, why, on what evidence, where in the log, and its undoing"),
    "anyOf": [{"required": ["survivor"]}, {"required": ["status"]}]}
ANSWER_SCHEMAS["Merge"]["required"] = ["merge_id", "position"]  # 202: merge_id, position and status alone
ANSWER_SCHEMAS["Merge"]["properties"].update(_MERGE_PENDING)

ANSWER_SCHEMAS["MergeFeed"] = _object({"events": _LIST, "next_after": {"type": "integer", "minimum": 0}},
                                      "merges made and undone, in log order: each a CustomerMerged or "
                                      "CustomerUnmerged (schemas/identity)")
ANSWER_SCHEMAS["ConflictResolution"] = _object({
    "conflict_position": {"type": "integer"}, "survivor": {"type": "string"}, "merges": _LIST},
    "the merges that resolved the conflict (each a Merge; pending ones while the views fold them)")

ANSWER_SCHEMAS["SubjectAccess"] = _object({
    "format": {"const": "touchstream.subject_access.v1"}, "generated_at": _INSTANT, "position": {"type": "integer"},
    "customer_id": {"type": "string"}, "customers": {"type": "array", "items": {"type": "string"}},
    "customer": {"type": "object"}, "touchpoints": _LIST, "consent_history": _LIST, "lifecycle_transitions": _LIST,
    "triggers": _LIST, "segments": {"type": "array", "items": {"type": "string"}}, "merges": _LIST},
    "everything held about the customer (subject access and portability: services/api/export_routes.py)")

ANSWERS: dict[tuple[str, str], str] = {
    ("get", "/v1/customers/{customer_id}/export"): "SubjectAccess",
    ("get", "/v1/merges"): "MergeFeed",
    ("post", "/v1/identity/conflicts/{position}/resolve"): "ConflictResolution",
    ("post", "/v1/customers/{customer_id}/merge"): "Merge",
    ("post", "/v1/merges/{merge_id}/undo"): "Merge",
    ("get", "/v1/merges/{merge_id}"): "Merge",
    ("get", "/v1/customers/{customer_id}"): "CustomerView",
    ("get", "/v1/customers"): "CustomerView",
    ("get", "/v1/customers/{customer_id}/timeline"): "TimelinePage",
    ("get", "/v1/identity/conflicts"): "Conflicts",
    ("get", "/v1/dead-letters"): "DeadLetters",
    ("get", "/v1/triggers/dead-letters"): "DeadLetters",
    ("get", "/v1/lifecycle/transitions"): "TransitionsPage",
    ("get", "/v1/analytics/lifecycle"): "LifecycleFigures",
    ("post", "/v1/clock/ticks"): "Tick",
    ("get", "/v1/analytics/triggers"): "TriggerFigures",
    ("get", "/v1/triggers"): "TriggersPage",
    ("get", "/v1/value/model"): "PurchaseModel",
    ("post", "/v1/value/refit"): "PurchaseModel",
    ("get", "/v1/value/validation"): "ValueValidation",
    ("get", "/v1/analytics/rfm"): "RfmGrid",
    ("get", "/v1/analytics/value"): "ValueFigures",
    ("get", "/v1/analytics/segments"): "SegmentFigures",
    ("get", "/v1/segments/changes"): "SegmentChangesPage",
    ("post", "/v1/forms/{form_id}"): "Verdict",
    ("get", "/healthz"): "Health",
    ("get", "/readyz"): "Readiness",
}
