"""Reading a JSON request body within limits: 415 unless JSON, 413 past the size limit
(checked on the declared length and again while reading), 400 when it does not parse.

Parsing is strict (RFC 8259 as interoperable JSON, RFC 7493): UTF-8 only; an object
naming a key twice is refused, since parsers disagree on which copy wins and a sender's
``"amount"`` must not be silently replaced by a later one; ``NaN`` and ``Infinity`` are
not JSON.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import HTTPException, Request

__all__ = ["read_json", "read_limited", "parse_json"]


class _Refused(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(f"duplicate key {key!r} in one object")
            seen.add(key)
    return found


def _no_constant(name: str) -> Any:
    raise _Refused(f"{name} is not JSON")


def parse_json(body: bytes) -> Any:
    """The JSON value of ``body``, or HTTPException 400 naming what is wrong."""
    try:
        return json.loads(body.decode("utf-8"), object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except UnicodeDecodeError as error:
        raise HTTPException(400, f"malformed JSON: not UTF-8 ({error.reason} at byte {error.start})") from None
    except _Refused as error:
        raise HTTPException(400, f"malformed JSON: {error}") from None
    except json.JSONDecodeError as error:
        raise HTTPException(400, f"malformed JSON: {error}") from None
    except RecursionError:
        raise HTTPException(400, "malformed JSON: nested too deeply") from None


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
    return parse_json(await read_limited(request, max_bytes))
