"""The CI gate for ``schemas/``: every version reads what the previous one wrote.

For every family with versions v1..vn:

* versions are numbered 1, 2, ... n without gaps, and every version has at least one
  example message beside it, which encodes and decodes with that version back to the
  very same canonical dict;
* structural: vN can read v(N-1) by the Avro resolution rules
  (``services.contracts.resolution``), every problem named with its field path;
* data: every example of v(N-1), written with v(N-1), decodes with the vN reader.

``python -m services.contracts.compatibility [schemas_dir]`` prints
``OK: N families, M versions checked`` and exits 0, or prints one problem a line and
exits 1.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from services.contracts.errors import ContractError, RecordDoesNotMatchSchema
from services.contracts.registry import SCHEMAS_DIR, SchemaRegistry
from services.contracts.resolution import resolution_problems

__all__ = ["Problem", "check", "main"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason the schemas directory is not acceptable."""

    family: str
    version: int  # the version at fault (the reader, for a compatibility problem)
    path: str  # field path, "" when the problem is not about one field
    message: str

    def __str__(self) -> str:
        head = f"{self.family} v{self.version}: " if self.family else ""
        where = f"{self.path}: " if self.path else ""
        return f"{head}{where}{self.message}"


def _examples(registry: SchemaRegistry, family: str, version: int) -> list[Problem]:
    contract = registry.contract(family, version)
    try:
        examples = contract.examples()
    except ContractError as error:
        return [Problem(family, version, "", str(error))]
    if not examples:
        return [Problem(family, version, "", f"no example messages beside {contract.path.name}")]
    problems = []
    for i, example in enumerate(examples):
        try:
            data = registry.encode_record(family, example, version=version)
            if registry.decode_record(data, version=version) != (family, example):
                problems.append(Problem(family, version, "", f"example {i} does not round-trip exactly"))
        except RecordDoesNotMatchSchema as error:
            problems.append(Problem(family, version, error.path, f"example {i}: {error.reason}"))
        except ContractError as error:
            problems.append(Problem(family, version, "", f"example {i}: {error}"))
    return problems


def _compatibility(registry: SchemaRegistry, family: str, old: int, new: int) -> list[Problem]:
    writer, reader = registry.contract(family, old), registry.contract(family, new)
    problems = [
        Problem(family, new, path, f"cannot read v{old}: {message}")
        for path, message in resolution_problems(writer.schema, reader.schema, writer.named, reader.named)
    ]
    try:
        examples = writer.examples()
    except ContractError:
        examples = []  # reported by _examples for the old version
    for i, example in enumerate(examples):
        try:
            data = registry.encode_record(family, example, version=old)
        except ContractError:
            continue  # reported by _examples for the old version
        try:
            registry.decode_record(data, version=new)
        except ContractError as error:
            problems.append(Problem(family, new, "", f"cannot read v{old} example {i}: {error}"))
    return problems


def check(schemas_dir: Path | str) -> list[Problem]:
    """Every problem in ``schemas_dir``; [] means the contracts are sound."""
    if not Path(schemas_dir).is_dir():
        return [Problem("", 0, "", f"{schemas_dir} is not a directory")]
    try:
        registry = SchemaRegistry(schemas_dir)
    except ContractError as error:
        return [Problem("", 0, "", str(error))]
    if not registry.families():
        return [Problem("", 0, "", f"no *.avsc schemas under {schemas_dir}")]
    problems: list[Problem] = []
    for family in registry.families():
        versions = registry.versions(family)
        if versions != tuple(range(1, len(versions) + 1)):
            problems.append(Problem(family, max(versions), "", f"versions {list(versions)} are not 1..n"))
        for version in versions:
            problems += _examples(registry, family, version)
        for old, new in zip(versions, versions[1:]):
            problems += _compatibility(registry, family, old, new)
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``check`` on ``argv[0]`` (default: the repository's schemas/); the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    schemas_dir = Path(args[0]) if args else SCHEMAS_DIR
    problems = check(schemas_dir)
    for problem in problems:
        print(problem)
    if problems:
        return 1
    registry = SchemaRegistry(schemas_dir)
    families = registry.families()
    versions = sum(len(registry.versions(f)) for f in families)
    print(f"OK: {len(families)} families, {versions} versions checked")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
