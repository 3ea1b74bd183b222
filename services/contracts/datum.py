"""Canonical dict ↔ Avro datum, walking the schema.

The canonical form (``projections.codec``) is JSON-able: instants are ISO 8601 strings,
decimals are strings. fastavro wants ``datetime`` and ``Decimal``. ``to_datum`` converts
*and validates*, so a record that does not fit fails with the path of the offending
field (``customer.emails[1]``, ``lines[0].unit_price``, ``attributes[city]``) instead of
a bare fastavro error. Map keys are written sorted, so equal records give equal bytes.
``from_datum`` is its inverse on what fastavro decodes.

Decimal rule: a decimal's canonical string carries exactly the schema's ``scale``
fractional digits, in plain notation: with scale 4, ``"12.5000"``, ``"0.0000"``,
``"-3.1400"``. ``from_datum`` always returns that form. ``to_datum`` accepts any decimal
string whose value needs at most ``scale`` fractional digits (``"12.5"`` encodes as
``12.5000``) and refuses more (no silent rounding). So ``from_datum(to_datum(d)) == d``
exactly for canonical strings, and by value for the others. The form is closed under
addition, so sums (revenue in the customer view) keep it too.

Logical types other than ``timestamp-micros`` and ``decimal`` pass as their base type.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Context, Decimal, InvalidOperation
from typing import Any

from projections.codec import format_instant, instant
from services.contracts.errors import RecordDoesNotMatchSchema

__all__ = ["to_datum", "from_datum", "compile_from_datum", "canonical_decimal"]

Named = dict[str, Any]
_INT_BOUNDS = {"int": 2**31, "long": 2**63}
_PRIMITIVE_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "bytes": (bytes,), "boolean": (bool,), "float": (int, float),
    "double": (int, float),
}


def canonical_decimal(value: Decimal, scale: int) -> str:
    """The canonical string of ``value`` at ``scale`` (exactly ``scale`` fractional digits)."""
    return f"{value.quantize(Decimal(1).scaleb(-scale)):f}"


def _resolve(schema: Any, named: Named) -> Any:
    while isinstance(schema, str) and schema in named:
        schema = named[schema]
    if isinstance(schema, dict) and isinstance(schema.get("type"), (dict, list)):
        return schema["type"]  # {"type": {...}} wraps a complex type
    return schema


def _fail(path: str, reason: str) -> RecordDoesNotMatchSchema:
    return RecordDoesNotMatchSchema(path, reason)


def to_datum(schema: Any, value: Any, named: Named, path: str = "") -> Any:
    """The fastavro datum for a canonical ``value``; raises RecordDoesNotMatchSchema."""
    schema = _resolve(schema, named)
    if isinstance(schema, list):
        return _union_to_datum(schema, value, named, path)
    kind = schema if isinstance(schema, str) else schema["type"]
    logical = schema.get("logicalType") if isinstance(schema, dict) else None
    if logical == "timestamp-micros":
        return _instant(value, path)
    if logical == "decimal" and kind == "bytes":
        return _decimal(value, schema, path)
    if kind == "record":
        return _record_to_datum(schema, value, named, path)
    if kind == "enum":
        if value not in schema["symbols"]:
            raise _fail(path, f"{value!r} is not one of {schema['symbols']}")
        return value
    if kind == "array":
        if not isinstance(value, (list, tuple)):
            raise _fail(path, f"expected a list, got {type(value).__name__}")
        return [to_datum(schema["items"], v, named, f"{path}[{i}]") for i, v in enumerate(value)]
    if kind == "map":
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise _fail(path, "expected an object with string keys")
        # sorted keys: the same record always gives the same bytes
        return {k: to_datum(schema["values"], value[k], named, f"{path}[{k}]") for k in sorted(value)}
    if kind == "fixed":
        if not isinstance(value, bytes) or len(value) != schema["size"]:
            raise _fail(path, f"expected {schema['size']} bytes")
        return value
    return _primitive(kind, value, path)


def _primitive(kind: str, value: Any, path: str) -> Any:
    if kind == "null":
        if value is not None:
            raise _fail(path, f"expected null, got {value!r}")
        return None
    if kind in _INT_BOUNDS:
        bound = _INT_BOUNDS[kind]
        if not isinstance(value, int) or isinstance(value, bool) or not -bound <= value < bound:
            raise _fail(path, f"expected an Avro {kind}, got {value!r}")
        return value
    expected = _PRIMITIVE_TYPES[kind]
    if not isinstance(value, expected) or (isinstance(value, bool) and kind != "boolean"):
        raise _fail(path, f"expected {kind}, got {type(value).__name__}")
    return value


def _union_to_datum(branches: list[Any], value: Any, named: Named, path: str) -> Any:
    if value is None and "null" in branches:
        return None
    others = [b for b in branches if b != "null"]
    if len(others) == 1:  # the usual ["null", T]: report T's own, precise error
        return to_datum(others[0], value, named, path)
    for branch in others:
        try:
            return to_datum(branch, value, named, path)
        except RecordDoesNotMatchSchema:
            continue
    raise _fail(path, f"{value!r} matches no branch of the union")


def _record_to_datum(schema: dict[str, Any], value: Any, named: Named, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, f"expected an object, got {type(value).__name__}")
    fields = {f["name"]: f for f in schema["fields"]}
    extra = sorted(set(value) - set(fields))
    if extra:
        raise _fail(f"{path}.{extra[0]}" if path else extra[0], "not a field of the schema")
    out: dict[str, Any] = {}
    for name, field in fields.items():
        where = f"{path}.{name}" if path else name
        if name not in value and "default" not in field:
            raise _fail(where, "missing (the field has no default)")
        raw = value[name] if name in value else field["default"]
        out[name] = to_datum(field["type"], raw, named, where)
    return out


def _instant(value: Any, path: str) -> datetime:
    try:
        return instant(value)
    except (TypeError, ValueError) as error:
        raise _fail(path, f"expected an ISO 8601 instant with a time zone: {error}") from None


def _decimal(value: Any, schema: dict[str, Any], path: str) -> Decimal:
    scale, precision = schema.get("scale", 0), schema["precision"]
    try:
        number = Decimal(value) if isinstance(value, str) else None
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite():
        raise _fail(path, f"expected a decimal string, got {value!r}")
    if number and number.adjusted() >= precision - scale:
        raise _fail(path, f"{value} has more than {precision - scale} integer digits")
    quantized = number.quantize(Decimal(1).scaleb(-scale), context=Context(prec=max(28, precision)))
    if quantized != number:
        raise _fail(path, f"{value} has more than {scale} decimal places")
    return quantized


def from_datum(schema: Any, datum: Any, named: Named) -> Any:
    """The canonical value of a datum fastavro decoded with ``schema``."""
    schema = _resolve(schema, named)
    if isinstance(schema, list):
        if datum is None:
            return None
        branch = next(b for b in schema if b != "null" and _holds(_resolve(b, named), datum))
        return from_datum(branch, datum, named)
    kind = schema if isinstance(schema, str) else schema["type"]
    if isinstance(datum, datetime):
        return format_instant(datum)
    if isinstance(datum, Decimal):
        return canonical_decimal(datum, schema.get("scale", 0))
    if kind == "record":
        return {f["name"]: from_datum(f["type"], datum[f["name"]], named) for f in schema["fields"]}
    if kind == "array":
        return [from_datum(schema["items"], v, named) for v in datum]
    if kind == "map":
        return {k: from_datum(schema["values"], v, named) for k, v in datum.items()}
    return datum


def _holds(schema: Any, datum: Any) -> bool:
    """Could this union branch have produced ``datum``? (fastavro does not say which did)."""
    kind = schema if isinstance(schema, str) else schema["type"]
    logical = schema.get("logicalType") if isinstance(schema, dict) else None
    if isinstance(datum, (datetime, Decimal)):
        return logical in ("timestamp-micros", "decimal")
    if isinstance(datum, dict):
        return kind in ("record", "map")
    if isinstance(datum, list):
        return kind == "array"
    if isinstance(datum, str):
        return kind in ("string", "enum")
    if isinstance(datum, bool):
        return kind == "boolean"
    if isinstance(datum, bytes):
        return kind in ("bytes", "fixed")
    return kind in ("int", "long", "float", "double")


def _same(datum: Any) -> Any:
    return datum


def compile_from_datum(schema: Any, named: Named, *, typed: bool = False) -> Callable[[Any], Any]:
    """``from_datum`` for one schema, compiled once into nested closures: the schema walk,
    name resolution and type tests happen here instead of for every record (the view
    worker decodes every touchpoint with it). Same results as ``from_datum``; with
    ``typed``, instants stay ``datetime`` and decimals ``Decimal`` (what
    ``projections.codec.from_dict`` builds from their text anyway)."""
    schema = _resolve(schema, named)
    if isinstance(schema, list):
        others = [b for b in schema if b != "null"]
        if len(others) == 1:
            inner = compile_from_datum(others[0], named, typed=typed)
            return _same if inner is _same else (lambda d: None if d is None else inner(d))
        branches = [(_resolve(b, named), compile_from_datum(b, named, typed=typed)) for b in others]

        def union(datum: Any) -> Any:
            if datum is None:
                return None
            return next(convert for branch, convert in branches if _holds(branch, datum))(datum)

        return union
    kind = schema if isinstance(schema, str) else schema["type"]
    logical = schema.get("logicalType") if isinstance(schema, dict) else None
    if logical in ("timestamp-micros", "decimal") and typed:
        return _same
    if logical == "timestamp-micros":
        return format_instant
    if logical == "decimal":
        scale = schema.get("scale", 0)
        return lambda d: canonical_decimal(d, scale)
    if kind == "record":
        fields = [(f["name"], compile_from_datum(f["type"], named, typed=typed)) for f in schema["fields"]]
        plain = [name for name, convert in fields if convert is _same]
        converted = [(name, convert) for name, convert in fields if convert is not _same]
        order = [name for name, _ in fields]

        def record(datum: Any) -> dict[str, Any]:
            out = {name: datum[name] for name in plain}
            for name, convert in converted:
                out[name] = convert(datum[name])
            return {name: out[name] for name in order}  # the schema's field order, as from_datum

        return record
    if kind == "array":
        item = compile_from_datum(schema["items"], named, typed=typed)
        return list if item is _same else (lambda d: [item(v) for v in d])
    if kind == "map":
        value = compile_from_datum(schema["values"], named, typed=typed)
        return dict if value is _same else (lambda d: {k: value(v) for k, v in d.items()})
    return _same
