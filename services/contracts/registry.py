"""The schema registry: every contract in ``schemas/``, and the Avro bytes they define.

Layout (Iglu style, the path is the identity): ``schemas/<family>/v<N>.avsc`` with
examples in ``v<N>.examples.json`` beside it; ``<family>`` is the relative folder, e.g.
``touchpoint/call`` or ``view/customer_view``. Versions are never edited, only added.

Wire format: Avro single-object encoding — ``C3 01``, the writer schema's CRC-64-AVRO
(Rabin) fingerprint of its parsing canonical form as 8 little-endian bytes, then the
schemaless Avro payload. With a Confluent-compatible schema registry configured
(``services.contracts.confluent``), records are framed the registry's way instead: a zero
byte, the registry's schema id (4 bytes, big-endian), then the payload; ids are learnt
from the registry (``learn_registry_id``) and both framings are read.
Records are written with the latest version of their family
and read with the latest version (Avro schema resolution), whichever version wrote
them. Errors: see ``services.contracts.errors``.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint as _fingerprint_hex
from fastavro.schema import to_parsing_canonical_form

from projections.codec import from_dict, to_dict
from projections.touchpoints import Touchpoint
from services.contracts.datum import compile_from_datum, to_datum
from services.contracts.errors import (
    NotATouchpoint,
    NotSingleObjectEncoded,
    RecordDoesNotMatchSchema,
    SchemaDirectoryError,
    UndecodableRecord,
    UnknownSchemaFamily,
    UnknownSchemaFingerprint,
    UnknownSchemaId,
)

__all__ = ["SCHEMAS_DIR", "MARKER", "CONFLUENT_MAGIC", "Contract", "SchemaRegistry", "fingerprint", "default_registry"]

SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"
MARKER = b"\xc3\x01"
_HEADER_SIZE = len(MARKER) + 8
CONFLUENT_MAGIC = b"\x00"
_CONFLUENT_HEADER_SIZE = 5
_VERSION_FILE = re.compile(r"v([1-9][0-9]*)\.avsc")


def fingerprint(schema: Any) -> int:
    """CRC-64-AVRO fingerprint (unsigned) of a schema's parsing canonical form."""
    parsed = fastavro.parse_schema(schema, named_schemas={})
    hex_le = _fingerprint_hex(to_parsing_canonical_form(parsed), "CRC-64-AVRO")
    return int.from_bytes(bytes.fromhex(hex_le), "little")  # fastavro gives the wire bytes


@dataclass(frozen=True, slots=True, eq=False)
class Contract:
    """One version of one family: the parsed schema and where it lives."""

    family: str
    version: int
    path: Path
    schema: dict[str, Any]  # parsed by fastavro
    named: dict[str, Any]  # its named types, by full name
    fingerprint: int

    @property
    def header(self) -> bytes:
        return MARKER + self.fingerprint.to_bytes(8, "little")

    def examples(self) -> list[dict[str, Any]]:
        """The example messages beside the schema (canonical form); [] if none.
        Raises SchemaDirectoryError when the file is not a JSON list."""
        path = self.path.with_name(f"v{self.version}.examples.json")
        if not path.exists():
            return []
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise SchemaDirectoryError(f"{path}: {error}") from error
        if not isinstance(loaded, list):
            raise SchemaDirectoryError(f"{path}: expected a JSON list of example messages")
        return loaded


def _load(path: Path, root: Path) -> Contract:
    match = _VERSION_FILE.fullmatch(path.name)
    if match is None:
        raise SchemaDirectoryError(f"{path}: schema files are named v<N>.avsc")
    named: dict[str, Any] = {}
    try:
        schema = fastavro.parse_schema(json.loads(path.read_text(encoding="utf-8")), named_schemas=named)
    except Exception as error:  # fastavro raises several types for a bad schema
        raise SchemaDirectoryError(f"{path}: {error}") from error
    family = path.parent.relative_to(root).as_posix()
    # parse_schema may return a name or a union; a contract file holds a record, a dict
    return Contract(family, int(match[1]), path, schema, named, fingerprint(schema))  # type: ignore[arg-type]


class SchemaRegistry:
    """Every ``*.avsc`` under ``schemas_dir`` (default: the repository's ``schemas/``)."""

    def __init__(self, schemas_dir: Path | str | None = None) -> None:
        self.root = Path(schemas_dir) if schemas_dir is not None else SCHEMAS_DIR
        self._versions: dict[str, dict[int, Contract]] = {}
        self._by_fingerprint: dict[int, Contract] = {}
        self._by_registry_id: dict[int, Contract] = {}
        self._registry_ids: dict[int, int] = {}  # id() of a contract held here -> registry id
        self._readers: dict[tuple[int, bool], Callable[[Any], Any]] = {}  # by id() of a contract held here
        for path in sorted(self.root.rglob("*.avsc")):
            contract = _load(path, self.root)
            self._versions.setdefault(contract.family, {})[contract.version] = contract
        for family in sorted(self._versions):
            for _, contract in sorted(self._versions[family].items()):
                held = self._by_fingerprint.setdefault(contract.fingerprint, contract)
                if held.family != family:  # same family: identical writers, keep the first
                    raise SchemaDirectoryError(f"{held.path} and {contract.path} have the same fingerprint")

    def _reader(self, contract: Contract, *, typed: bool = False) -> Callable[[Any], Any]:
        key = (id(contract), typed)
        reader = self._readers.get(key)
        if reader is None:
            reader = self._readers[key] = compile_from_datum(contract.schema, contract.named, typed=typed)
        return reader

    def families(self) -> tuple[str, ...]:
        return tuple(sorted(self._versions))

    def versions(self, family: str) -> tuple[int, ...]:
        return tuple(sorted(self._versions.get(family, ())))

    def contract(self, family: str, version: int | None = None) -> Contract:
        """The given version of ``family``, the latest when ``version`` is None."""
        versions = self._versions.get(family)
        if not versions:
            raise UnknownSchemaFamily(family)
        chosen = versions.get(max(versions) if version is None else version)
        if chosen is None:
            raise UnknownSchemaFamily(family, version)
        return chosen

    def learn_registry_id(self, schema_id: int, contract: Contract) -> None:
        """A schema registry's id for one of our contracts (Confluent framing)."""
        self._by_registry_id[schema_id] = contract
        self._registry_ids[id(contract)] = schema_id

    def registry_id(self, contract: Contract) -> int | None:
        return self._registry_ids.get(id(contract))

    def knows_registry_id(self, schema_id: int) -> bool:
        return schema_id in self._by_registry_id

    def encode_record(self, family: str, record: dict[str, Any], *, version: int | None = None,
                      registry_id: int | None = None) -> bytes:
        """Single-object bytes of a canonical ``record``, written with ``family``'s latest
        (or the given) version; with ``registry_id``, Confluent-framed with that id.
        Raises RecordDoesNotMatchSchema, UnknownSchemaFamily."""
        contract = self.contract(family, version)
        datum = to_datum(contract.schema, record, contract.named)
        header = contract.header if registry_id is None else CONFLUENT_MAGIC + registry_id.to_bytes(4, "big")
        out = io.BytesIO(header)
        out.seek(0, io.SEEK_END)
        try:
            fastavro.schemaless_writer(out, contract.schema, datum)
        except (ValueError, TypeError, OverflowError) as error:  # to_datum checks first
            raise RecordDoesNotMatchSchema("", str(error)) from error
        return out.getvalue()

    def decode_record(self, data: bytes, *, version: int | None = None,
                      typed: bool = False) -> tuple[str, dict[str, Any]]:
        """(family, canonical record) read with the latest (or the given) version of the
        writer's family (``typed``: instants and decimals as Python objects)."""
        if len(data) >= _CONFLUENT_HEADER_SIZE and data.startswith(CONFLUENT_MAGIC):
            schema_id = int.from_bytes(data[1:_CONFLUENT_HEADER_SIZE], "big")
            found = self._by_registry_id.get(schema_id)
            if found is None:
                raise UnknownSchemaId(schema_id)
            writer, header_size = found, _CONFLUENT_HEADER_SIZE
        else:
            if len(data) < _HEADER_SIZE or not data.startswith(MARKER):
                got = data[:_HEADER_SIZE].hex()
                raise NotSingleObjectEncoded(f"expected {MARKER.hex()} + an 8-byte fingerprint, got {got}")
            fp = int.from_bytes(data[2:_HEADER_SIZE], "little")
            found = self._by_fingerprint.get(fp)
            if found is None:
                raise UnknownSchemaFingerprint(fp)
            writer, header_size = found, _HEADER_SIZE
        reader = self.contract(writer.family, version)
        payload = io.BytesIO(data[header_size:])
        try:
            datum = fastavro.schemaless_reader(payload, writer.schema, None if reader is writer else reader.schema)
            record = self._reader(reader, typed=typed)(datum)
        except UnicodeDecodeError as error:  # its text quotes the bytes: personal data, maybe
            raise UndecodableRecord(f"{writer.family} v{writer.version}: invalid UTF-8 in a string") from error
        except Exception as error:  # untrusted bytes: whatever fastavro raises, wrap it
            raise UndecodableRecord(f"{writer.family} v{writer.version}: {error!r}") from error
        if payload.tell() != len(data) - header_size:
            raise UndecodableRecord(f"{writer.family} v{writer.version}: trailing bytes after the record")
        return writer.family, record

    def encode(self, event: Touchpoint, *, registry_id: int | None = None) -> bytes:
        """Single-object bytes of a touchpoint, with its type's latest schema (Confluent
        framing with ``registry_id``)."""
        return self.encode_record(f"touchpoint/{event.type}", to_dict(event), registry_id=registry_id)

    def decode(self, data: bytes) -> Touchpoint:
        """The touchpoint in ``data``, whichever version of its schema wrote it."""
        family, record = self.decode_record(data, typed=True)
        kind, _, name = family.partition("/")
        if kind != "touchpoint":
            raise NotATouchpoint(family)
        if record.get("type") != name:
            raise UndecodableRecord(f"{family} record says it is a {record.get('type')!r}")
        try:
            return from_dict(record)
        except (KeyError, TypeError, ValueError) as error:
            raise UndecodableRecord(f"{family}: {error!r}") from error


@cache
def default_registry() -> SchemaRegistry:
    """The registry of the repository's ``schemas/``, loaded once."""
    return SchemaRegistry()
