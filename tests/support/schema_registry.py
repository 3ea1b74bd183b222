"""A schema registry on loopback speaking the Confluent REST subset Touchstream uses.

No Confluent-compatible registry installs on these machines (Karapace and Apicurio are
not in the package registries we reach), so the tests run this one: real HTTP, ids given
per distinct schema text, ``POST /subjects/{subject}/versions`` and
``GET /schemas/ids/{id}`` (404 with error_code 40403 when unknown), as documented by
Confluent. It records every request so tests can check what the product asked.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from aiohttp import web

from tools.bench.server import free_port

__all__ = ["SchemaRegistryServer"]


class SchemaRegistryServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.schemas: dict[int, str] = {}
        self.subjects: dict[str, list[int]] = {}
        self.requests: list[tuple[str, str]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    async def _register(self, request: web.Request) -> web.Response:
        self.requests.append(("POST", request.path))
        body: dict[str, Any] = await request.json()
        text = body["schema"]
        schema_id = next((i for i, s in self.schemas.items() if s == text), None)
        if schema_id is None:
            schema_id = len(self.schemas) + 1
            self.schemas[schema_id] = text
        self.subjects.setdefault(request.match_info["subject"], []).append(schema_id)
        return web.json_response({"id": schema_id})

    async def _schema(self, request: web.Request) -> web.Response:
        self.requests.append(("GET", request.path))
        schema_id = int(request.match_info["id"])
        if schema_id not in self.schemas:
            return web.json_response({"error_code": 40403, "message": "Schema not found"}, status=404)
        return web.json_response({"schema": self.schemas[schema_id]})

    def start(self) -> SchemaRegistryServer:
        app = web.Application()
        app.router.add_post("/subjects/{subject}/versions", self._register)
        app.router.add_get("/schemas/ids/{id}", self._schema)
        self._thread.start()

        async def serve() -> None:
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

        asyncio.run_coroutine_threadsafe(serve(), self._loop).result(timeout=10)
        return self

    def close(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> SchemaRegistryServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
