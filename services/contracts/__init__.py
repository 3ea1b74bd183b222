"""The Avro contracts in ``schemas/``: single-object bytes in and out, and their checks.

``encode``/``decode`` turn touchpoints into Avro single-object bytes and back;
``encode_record``/``decode_record`` do the same for any family's canonical dict (the
published customer view). The module-level functions use the repository's ``schemas/``
(``default_registry()``); build a ``SchemaRegistry`` for another directory. Errors form
one hierarchy rooted at ``ContractError`` (``services.contracts.errors``).
"""

from __future__ import annotations

from typing import Any

from projections.touchpoints import Touchpoint
from services.contracts.errors import (
    ContractError,
    NotATouchpoint,
    NotSingleObjectEncoded,
    RecordDoesNotMatchSchema,
    SchemaDirectoryError,
    UndecodableRecord,
    UnknownSchemaFamily,
    UnknownSchemaFingerprint,
    UnknownSchemaId,
)
from services.contracts.registry import Contract, SchemaRegistry, default_registry, fingerprint

__all__ = [
    "Contract",
    "SchemaRegistry",
    "default_registry",
    "fingerprint",
    "encode",
    "decode",
    "encode_record",
    "decode_record",
    "ContractError",
    "SchemaDirectoryError",
    "UnknownSchemaFamily",
    "RecordDoesNotMatchSchema",
    "NotSingleObjectEncoded",
    "UnknownSchemaFingerprint",
    "UnknownSchemaId",
    "UndecodableRecord",
    "NotATouchpoint",
]


def encode(event: Touchpoint) -> bytes:
    return default_registry().encode(event)


def decode(data: bytes) -> Touchpoint:
    return default_registry().decode(data)


def encode_record(family: str, record: dict[str, Any]) -> bytes:
    return default_registry().encode_record(family, record)


def decode_record(data: bytes) -> tuple[str, dict[str, Any]]:
    return default_registry().decode_record(data)
