"""Avro schema resolution, as a checker: can a reader schema read what a writer wrote?

The rules of the Avro specification ("Schema Resolution"), stated as problems rather
than raised at read time, each with the field path where it happens (``customer.emails[]``
for array items, ``attributes{}`` for map values):

* primitives match, or the writer's type promotes to the reader's: int → long, float,
  double; long → float, double; float → double; string ↔ bytes;
* a logical type may not change (same base type, different meaning), and decimals must
  keep their precision and scale;
* records and enums and fixed match by unqualified name (or a reader alias); a field the
  reader adds needs a default; a field the reader drops is fine;
* an enum symbol the writer may send and the reader lacks needs a reader default;
* fixed keeps its size; arrays and maps resolve item/value schemas;
* every branch of a writer union must resolve against the reader; a writer non-union
  against a reader union needs a matching branch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["resolution_problems"]

Named = dict[str, Any]
_PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}
_NAMED_KINDS = ("record", "enum", "fixed")


def _resolve(schema: Any, named: Named) -> Any:
    while isinstance(schema, str) and schema in named:
        schema = named[schema]
    return schema


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    return schema if isinstance(schema, str) else str(schema["type"])


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _same_name(writer: dict[str, Any], reader: dict[str, Any]) -> bool:
    aliases = {_short(a) for a in reader.get("aliases", ())}
    return _short(writer["name"]) in {_short(reader["name"]), *aliases}


def _matches(writer: Any, reader: Any) -> bool:
    """The spec's "schemas match" test used to pick a union branch (shallow)."""
    wk, rk = _kind(writer), _kind(reader)
    if wk in _NAMED_KINDS or rk in _NAMED_KINDS:
        return wk == rk and _same_name(writer, reader)
    return wk == rk or rk in _PROMOTIONS.get(wk, set())


def resolution_problems(
    writer: Any, reader: Any, writer_named: Named, reader_named: Named, path: str = ""
) -> list[tuple[str, str]]:
    """Every (field path, problem) that stops ``reader`` from reading ``writer``'s data."""
    w, r = _resolve(writer, writer_named), _resolve(reader, reader_named)
    here = path or "<record>"

    def deeper(wsub: Any, rsub: Any, sub_path: str) -> list[tuple[str, str]]:
        return resolution_problems(wsub, rsub, writer_named, reader_named, sub_path)

    if isinstance(w, list):
        return [p for branch in w for p in deeper(branch, r, path)]
    if isinstance(r, list):
        branch = next((b for b in r if _matches(w, _resolve(b, reader_named))), None)
        if branch is None:
            return [(here, f"no branch of the reader's union can read the writer's {_kind(w)}")]
        return deeper(w, branch, path)
    wk, rk = _kind(w), _kind(r)
    if wk != rk:
        if rk in _PROMOTIONS.get(wk, set()):
            return []
        return [(here, f"type changed from {wk} to {rk}, which Avro cannot promote")]
    problems = _logical_problems(w, r, here)
    if wk in _NAMED_KINDS and not _same_name(w, r):
        return [(here, f"{wk} renamed from {w['name']} to {r['name']} without an alias")]
    if wk == "record":
        problems += _record_problems(w, r, path, deeper)
    elif wk == "enum":
        missing = [s for s in w["symbols"] if s not in r["symbols"]]
        if missing and "default" not in r:
            problems.append((here, f"enum symbols {missing} removed and the reader has no default"))
    elif wk == "fixed" and w["size"] != r["size"]:
        problems.append((here, f"fixed size changed from {w['size']} to {r['size']}"))
    elif wk == "array":
        problems += deeper(w["items"], r["items"], f"{path}[]")
    elif wk == "map":
        problems += deeper(w["values"], r["values"], f"{path}{{}}")
    return problems


def _logical_problems(w: Any, r: Any, here: str) -> list[tuple[str, str]]:
    wl = w.get("logicalType") if isinstance(w, dict) else None
    rl = r.get("logicalType") if isinstance(r, dict) else None
    if wl != rl:
        return [(here, f"logical type changed from {wl} to {rl}")]
    if wl == "decimal" and (w.get("precision"), w.get("scale", 0)) != (r.get("precision"), r.get("scale", 0)):
        return [(here, "decimal precision or scale changed")]
    return []


def _record_problems(w: dict[str, Any], r: dict[str, Any], path: str, deeper: Any) -> list[tuple[str, str]]:
    written = {f["name"]: f for f in w["fields"]}
    problems: list[tuple[str, str]] = []
    for field in r["fields"]:
        where = f"{path}.{field['name']}" if path else field["name"]
        names = [field["name"], *field.get("aliases", ())]
        source = next((written[n] for n in names if n in written), None)
        if source is None:
            if "default" not in field:
                problems.append((where, "field added without a default"))
            continue
        problems += deeper(source["type"], field["type"], where)
    return problems
