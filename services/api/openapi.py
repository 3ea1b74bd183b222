"""The OpenAPI 3.1 document clients and tools generate from (``GET /openapi.json``).

FastAPI's own document is completed where it cannot see what the routes do:

* every schema sits under ``components/schemas``: the touchpoint contract's definitions
  are lifted out of the inline ``$defs`` pydantic emits, so each ``$ref`` resolves;
* security: the API key as a bearer token (or ``X-API-Key``), each operation naming the
  scope it needs (OpenAPI 3.1 lets a non-OAuth requirement list roles; ``KeyRing.require``
  declares it, ingest's handler states it); routes without a key (operations, public
  forms) say so with an empty requirement;
* answers: each route's 200 (or 202) body, from ``services.api.answers``;
* errors: every 4xx and 5xx answers the one error envelope (``Error``), documented in
  place of the framework's ``HTTPValidationError``; 401, 403 and 429 on keyed routes, 404
  on routes addressing something by path, 503 wherever storage is read or written.

A unit test validates the result with ``openapi-spec-validator`` and resolves every ref.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from services.api.answers import ANSWER_SCHEMAS, ANSWERS
from services.api.contracts import TOUCHPOINT_ADAPTER

__all__ = ["install_openapi", "TOUCHPOINT_REF", "VERDICTS_REF"]

TOUCHPOINT_REF = {"$ref": "#/components/schemas/Touchpoint"}
VERDICTS_REF = {"$ref": "#/components/schemas/Verdicts"}
_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_ERRORS = {
    "Error": {
        "type": "object", "required": ["error"],
        "description": "every error the API answers; event and form posts add their per-event verdicts beside it",
        "properties": {"error": {"$ref": "#/components/schemas/ErrorDetail"}},
    },
    "ErrorDetail": {
        "type": "object", "required": ["status", "message"],
        "properties": {
            "status": {"type": "integer", "description": "the HTTP status, repeated"},
            "message": {"type": "string"},
            "errors": {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"},
                       "description": "one per field or parameter at fault (400, 413, 422)"},
        },
    },
    "Verdicts": {
        "type": "object", "required": ["position", "accepted", "duplicate", "rejected", "results"],
        "description": "one verdict per event posted, in order; position: the highest log position written",
        "properties": {
            "position": {"type": ["integer", "null"]},
            "accepted": {"type": "integer"}, "duplicate": {"type": "integer"}, "rejected": {"type": "integer"},
            "results": {"type": "array", "items": {"$ref": "#/components/schemas/Verdict"}},
            "error": {"$ref": "#/components/schemas/ErrorDetail"},
        },
    },
    "Verdict": {
        "type": "object", "required": ["event_id", "type", "result"],
        "properties": {
            "event_id": {"type": ["string", "null"]},
            "type": {"type": "string"},
            "result": {"enum": ["accepted", "duplicate", "rejected"]},
            "position": {"type": "integer", "description": "accepted: where it was written; duplicate: the copy's"},
            "reason": {"enum": ["invalid", "unknown_type", "too_large", "in_the_future"],
                       "description": "rejected only; in_the_future: dated ahead of the platform's clock"},
            "errors": {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}},
        },
    },
    "FieldError": {
        "type": "object", "required": ["path", "message"],
        "properties": {"path": {"type": "string", "examples": ["events[3].amount", "after"]},
                       "message": {"type": "string", "description": "the rule the value breaks"}},
    },
}
_KEYED = {"401": "missing or unknown API key", "403": "the key lacks the scope this route needs",
          "429": "rate limited; retry after Retry-After"}


def _touchpoint_schemas() -> dict[str, Any]:
    schema = TOUCHPOINT_ADAPTER.json_schema(ref_template="#/components/schemas/{model}")
    definitions: dict[str, Any] = schema.pop("$defs", {})
    # The branches exclude each other by "type", so anyOf says the same as pydantic's oneOf
    # and spares generators (clients' fuzzers) checking every branch of every example.
    schema["anyOf"] = schema.pop("oneOf")
    out = {**definitions, "Touchpoint": schema}
    _keys_by_pattern(out)
    return out


def _keys_by_pattern(node: Any) -> None:
    """pydantic states a mapping whose keys have a pattern as ``patternProperties``: a key
    outside the pattern then escapes every rule, values included. The server refuses such
    keys, so the contract says so: the pattern goes to ``propertyNames`` and the value
    rule to ``additionalProperties``."""
    if isinstance(node, dict):
        patterns = node.get("patternProperties")
        if isinstance(patterns, dict) and len(patterns) == 1 and "propertyNames" in node:
            (pattern, values), = patterns.items()
            del node["patternProperties"]
            node["propertyNames"] = {**node["propertyNames"], "pattern": pattern}
            node["additionalProperties"] = values
        for value in node.values():
            _keys_by_pattern(value)
    elif isinstance(node, list):
        for value in node:
            _keys_by_pattern(value)


def _complete(document: dict[str, Any]) -> dict[str, Any]:
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for framework in ("HTTPValidationError", "ValidationError"):
        schemas.pop(framework, None)
    schemas.update(_touchpoint_schemas())
    schemas.update(_ERRORS)
    schemas.update(ANSWER_SCHEMAS)
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            if (method, path) in ANSWERS:
                ref = {"$ref": f"#/components/schemas/{ANSWERS[method, path]}"}
                for status in [s for s in responses if s[0] == "2"] + (["503"] if path == "/readyz" else []):
                    content = responses[status].setdefault("content", {})  # other media a route declares stay
                    content["application/json"] = {"schema": ref}
            if operation.get("security"):
                for status, description in _KEYED.items():
                    responses.setdefault(status, {"description": description})
            else:
                operation.setdefault("security", [])
            if "requestBody" in operation:
                responses.setdefault("400", {"description": "malformed JSON"})
            for parameter in operation.get("parameters", ()):
                _not_null(parameter)
                _instant_by_pattern(parameter)
                if parameter["name"] == "min_position":
                    responses.setdefault("409", {"description": "min_position is past the log's head: no write "
                                                               "was given it"})
            if "{" in path:
                responses.setdefault("404", {"description": "nothing has this id"})
            if path.startswith("/v1/"):
                responses.setdefault("503", {"description": "storage unavailable; retry after Retry-After"})
            for status, response in responses.items():
                if status[0] in "45" and path.startswith("/v1/"):  # /readyz's 503 is its own report
                    if status == "422":
                        response["description"] = "invalid: each field or parameter at fault, and the rule"
                    content = response.setdefault("content", {}).setdefault("application/json", {})
                    if "schema" not in content or content["schema"].get("$ref", "").endswith("HTTPValidationError"):
                        content["schema"] = _ERROR_REF
    return document


def _not_null(parameter: dict[str, Any]) -> None:
    """A query string or header holds text, never JSON's null: an optional parameter is
    absent, so its schema is the text's alone (a generator sending "null" would send a
    value the server rightly refuses)."""
    schema = parameter.get("schema", {})
    branches = schema.get("anyOf")
    if branches and {"type": "null"} in branches:
        kept = [b for b in branches if b != {"type": "null"}]
        del schema["anyOf"]
        if len(kept) == 1:
            schema.update(kept[0])
        else:
            schema["anyOf"] = kept


def _instant_by_pattern(parameter: dict[str, Any]) -> None:
    """An instant in a query string is stated by its pattern alone (RFC 3339, the years
    the server takes): a generator then draws from the pattern, not from every date-time
    filtered by it (nine in ten thrown away). Bodies keep ``format: date-time`` for code
    generators' date types."""
    schema = parameter.get("schema", {})
    if schema.get("format") == "date-time":
        del schema["format"]
        parameter.setdefault("description", "an RFC 3339 instant with an offset")


def install_openapi(app: FastAPI) -> None:
    """Serve the completed document at ``/openapi.json`` (built once, on first request)."""

    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _complete(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
