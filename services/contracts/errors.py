"""Everything the contracts refuse, as one hierarchy.

::

    ContractError                          base: catch this to catch them all
    ├── SchemaDirectoryError               the schemas/ tree is malformed: a file name that
    │                                      is not vN.avsc, an unparsable schema, two
    │                                      families with the same fingerprint
    ├── UnknownSchemaFamily(family)        no schema of that family (encode_record), or
    │                                      no such version of it
    ├── RecordDoesNotMatchSchema(path)     a record to encode does not fit its schema;
    │                                      ``path`` names the field, e.g.
    │                                      ``lines[0].unit_price`` ("" = the record itself)
    ├── NotSingleObjectEncoded             the bytes do not start with the Avro
    │                                      single-object header (C3 01 + 8 bytes)
    ├── UnknownSchemaFingerprint(fp)       the header names a schema this registry does
    │                                      not hold (``fingerprint``: unsigned 64-bit int)
    ├── UndecodableRecord                  the payload does not decode with its writer
    │                                      schema: truncated, garbage, trailing bytes, or
    │                                      not a valid touchpoint once decoded
    └── NotATouchpoint(family)             ``decode`` got a valid record of another
                                           family (use ``decode_record`` for those)

Encoding raises only ``RecordDoesNotMatchSchema`` and ``UnknownSchemaFamily``; decoding
only ``NotSingleObjectEncoded``, ``UnknownSchemaFingerprint``, ``UndecodableRecord`` and
``NotATouchpoint`` (plus ``UnknownSchemaFamily`` when asked to read with a version that
does not exist). Loading a registry raises only ``SchemaDirectoryError``. Errors from
fastavro never escape: they are wrapped (``__cause__``).
"""

from __future__ import annotations

__all__ = [
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


class ContractError(Exception):
    """Base of every error raised by ``services.contracts``."""


class SchemaDirectoryError(ContractError):
    """The schemas directory cannot be loaded as a set of contracts."""


class UnknownSchemaFamily(ContractError):
    def __init__(self, family: str, version: int | None = None) -> None:
        self.family = family
        self.version = version
        what = family if version is None else f"{family} v{version}"
        super().__init__(f"no schema {what}")


class RecordDoesNotMatchSchema(ContractError):
    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path or '<record>'}: {reason}")


class NotSingleObjectEncoded(ContractError):
    """Not an Avro single-object encoding (wrong marker, or shorter than the header)."""


class UnknownSchemaFingerprint(ContractError):
    def __init__(self, fingerprint: int) -> None:
        self.fingerprint = fingerprint
        super().__init__(f"no schema with CRC-64-AVRO fingerprint {fingerprint:#018x}")


class UnknownSchemaId(ContractError):
    """A Confluent-framed record names a schema-registry id this process has not learnt
    (the registry does not know it, or it is no contract of ours)."""

    def __init__(self, schema_id: int) -> None:
        self.schema_id = schema_id
        super().__init__(f"no contract known for schema-registry id {schema_id}")


class UndecodableRecord(ContractError):
    """The header is valid but the payload is not a record of the schema it names."""


class NotATouchpoint(ContractError):
    def __init__(self, family: str) -> None:
        self.family = family
        super().__init__(f"a {family} record is not a touchpoint")
