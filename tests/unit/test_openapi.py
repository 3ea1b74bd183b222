"""The OpenAPI document (``GET /openapi.json``) is one tools can use: valid OpenAPI 3.1,
every ``$ref`` resolvable, security and error answers stated per route."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import pytest
from openapi_spec_validator import validate

from services.api.app import create_app
from services.embedded.platform import EmbeddedPlatform
from services.settings import Settings

OPEN_ROUTES = {"/metrics", "/healthz", "/readyz", "/v1/forms/{form_id}"}  # no API key: public or operations


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    platform = EmbeddedPlatform(Settings(data_dir=tmp_path_factory.mktemp("openapi")))
    try:
        yield create_app(platform).openapi()
    finally:
        asyncio.run(platform.close())


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        assert isinstance(node, dict) and part in node, f"dangling {ref}"
        node = node[part]
    return node


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_every_ref_resolves_and_every_schema_sits_under_components(document: dict[str, Any]) -> None:
    found = set(refs(document))
    assert "#/components/schemas/PurchaseIn" in found
    for ref in found:
        resolve(document, ref)
        # a whole component, never a pointer into one: code generators resolve only those
        assert re.fullmatch(r"#/components/schemas/[A-Za-z0-9_.-]+", ref), ref
    assert "$defs" not in str(document)


def test_the_event_body_is_the_touchpoint_contract_with_its_input_rules(document: dict[str, Any]) -> None:
    body = document["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"$ref": "#/components/schemas/Touchpoint"} in body["anyOf"]
    purchase = document["components"]["schemas"]["PurchaseIn"]["properties"]
    assert purchase["amount"]["type"] == "string" and "pattern" in purchase["amount"]
    assert "EUR" in purchase["currency"]["enum"] and "ZZZ" not in purchase["currency"]["enum"]
    assert purchase["occurred_at"]["format"] == "date-time"


def test_every_keyed_route_states_its_scheme_and_scope(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer", "description": schemes["bearer"]["description"]}
    for path, method, operation in operations(document):
        if path in OPEN_ROUTES:
            assert operation.get("security", []) == [], path
            continue
        [bearer, header] = operation["security"]
        assert bearer["bearer"] == header["apiKey"] and bearer["bearer"][0] in ("read", "ingest", "admin"), path
        assert {"401", "403", "429"} <= set(operation["responses"]), (method, path)
    assert document["paths"]["/v1/events"]["post"]["security"][0] == {"bearer": ["ingest"]}
    assert document["paths"]["/v1/clock/ticks"]["post"]["security"][0] == {"bearer": ["admin"]}


def test_every_error_answer_is_the_one_envelope_never_the_frameworks(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    for path, method, operation in operations(document):
        for status, response in operation["responses"].items():
            if status[0] in "45" and path.startswith("/v1/"):
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)


def test_routes_that_address_something_by_path_document_404(document: dict[str, Any]) -> None:
    for path, method, operation in operations(document):
        if "{" in path:
            assert "404" in operation["responses"], (method, path)
    assert "404" in document["paths"]["/v1/customers"]["get"]["responses"]


def test_a_query_parameter_documents_its_range(document: dict[str, Any]) -> None:
    parameters = {p["name"]: p["schema"] for p in document["paths"]["/v1/dead-letters"]["get"]["parameters"]}
    assert (parameters["after"]["minimum"], parameters["after"]["maximum"]) == (0, 2**63 - 1)



def test_every_successful_answer_states_its_schema(document: dict[str, Any]) -> None:
    for path, method, operation in operations(document):
        for status, response in operation["responses"].items():
            if status[0] == "2":
                assert response.get("content"), (method, path, status)
                for media, content in response["content"].items():
                    assert content.get("schema"), (method, path, status, media)
