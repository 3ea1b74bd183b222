"""Reading a JSON request body within limits: 415 unless JSON, 413 past the size limit
(checked on the declared length and again while reading), 400 when it does not parse."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import HTTPException, Request

__all__ = ["read_json", "read_limited"]


async def read_limited(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise HTTPException(413, f"body larger than {max_bytes} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise HTTPException(413, f"body larger than {max_bytes} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # Starlette re-reads a cached body for request.form()
    return body


async def read_json(request: Request, max_bytes: int) -> Any:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise HTTPException(415, "send application/json")
    body = await read_limited(request, max_bytes)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise HTTPException(400, f"malformed JSON: {error}") from None
