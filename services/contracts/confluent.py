"""A Confluent-compatible schema registry, when one is configured (``schema_registry_url``).

Without one, Kafka records carry Avro single-object encoding (the writer schema's
fingerprint), which needs no service. With one, producers register each touchpoint
contract under its record name (subject naming "RecordNameStrategy": all types share the
touchpoints topic) and frame records the registry's way — a zero byte, the registry's
4-byte schema id, the Avro payload — so tools of that ecosystem read them; consumers
learn the contract behind an id from the registry (``GET /schemas/ids/{id}``) and match
it to ours by fingerprint. Both framings are always read.

REST subset used: ``POST /subjects/{subject}/versions`` (body ``{"schema", "schemaType"}``,
answer ``{"id"}``) and ``GET /schemas/ids/{id}`` (answer ``{"schema"}``, 404 when unknown).
Any transport failure or 5xx is ``RegistryUnavailable``: ingest answers 503 and a worker
stalls and retries, rather than dead-lettering records it could read a moment later.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import httpx

from services.contracts.registry import Contract, SchemaRegistry, default_registry, fingerprint

__all__ = ["ConfluentRegistry", "RegistryUnavailable", "framed_schema_id"]

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryUnavailable(RuntimeError):
    """The schema registry did not answer, or answered with a server error."""


def framed_schema_id(value: bytes | None) -> int | None:
    """The schema id of a Confluent-framed value, else None."""
    if value is not None and len(value) >= 5 and value[0] == 0:
        return int.from_bytes(value[1:5], "big")
    return None


class ConfluentRegistry:
    def __init__(self, url: str, registry: SchemaRegistry | None = None, *, timeout: float = 5.0):
        self.url = url.rstrip("/")
        self.registry = registry or default_registry()
        self._client = httpx.AsyncClient(timeout=timeout, headers={"Accept": CONTENT_TYPE})
        self._unknown: set[int] = set()

    @staticmethod
    def subject(contract: Contract) -> str:
        return str(contract.schema["name"])  # the record's full name

    async def register(self, families: Iterable[str]) -> dict[str, int]:
        """Register the latest contract of each family; its id, by family."""
        ids: dict[str, int] = {}
        for family in families:
            contract = self.registry.contract(family)
            known = self.registry.registry_id(contract)
            if known is None:
                body = {"schema": contract.path.read_text(encoding="utf-8"), "schemaType": "AVRO"}
                answer = await self._call("POST", f"/subjects/{self.subject(contract)}/versions", json=body)
                known = int(answer.json()["id"])
                self.registry.learn_registry_id(known, contract)
            ids[family] = known
        return ids

    async def learn(self, schema_ids: Iterable[int]) -> set[int]:
        """Learn the contracts behind these ids; the ids that are none of ours (or that the
        registry does not know) are returned and not asked again."""
        for schema_id in set(schema_ids) - self._unknown:
            if self.registry.knows_registry_id(schema_id):
                continue
            answer = await self._call("GET", f"/schemas/ids/{schema_id}", missing_ok=True)
            contract = None
            if answer.status_code == 200:
                printed = fingerprint(json.loads(answer.json()["schema"]))
                contract = next((c for c in self._contracts() if c.fingerprint == printed), None)
            if contract is None:
                self._unknown.add(schema_id)
            else:
                self.registry.learn_registry_id(schema_id, contract)
        return {i for i in schema_ids if i in self._unknown}

    def _contracts(self) -> list[Contract]:
        r = self.registry
        return [r.contract(f, v) for f in r.families() for v in r.versions(f)]

    async def _call(self, method: str, path: str, *, missing_ok: bool = False, **kwargs: object) -> httpx.Response:
        try:
            answer = await self._client.request(method, self.url + path, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as error:
            raise RegistryUnavailable(f"schema registry at {self.url}: {type(error).__name__}") from error
        if answer.status_code >= 500 or (answer.status_code >= 400 and not (missing_ok and answer.status_code == 404)):
            raise RegistryUnavailable(f"schema registry at {self.url} answered {answer.status_code} to {method} {path}")
        return answer

    async def aclose(self) -> None:
        await self._client.aclose()
