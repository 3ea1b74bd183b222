"""Rule files on disk: YAML read strictly, compiled by ``projections.nbc.rules``.

What this adds to the pure compiler is what needs the file: its text and the machine.

* **Positions.** Every error is prefixed ``FILE:LINE:COLUMN`` (1-based) of the field it
  names, or of the nearest enclosing field the file has, so an editor jumps to it.
* **YAML syntax** errors (a bad indent, a tab, an unclosed bracket) are ``RuleError``\\ s
  at the position PyYAML reports.
* **Duplicate keys** are errors: YAML keeps the last silently, and a rule pasted twice
  with one ``who`` edited would otherwise lose the edit without a word.
* **Time zones** must exist in this machine's time-zone database.
"""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Any

import yaml

from projections.nbc.rules import RuleErrors, RuleSet, compile_rules
from projections.predicates.errors import Path, RuleError
from services.zones import PINNED

__all__ = ["load_rules", "read_rules"]


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}' (first at line {seen[key].line + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep)


def load_rules(path: FilePath, source: str | None = None) -> RuleSet:
    """The rule set in the YAML file at ``path``; ``RuleErrors`` with positions if any."""
    return read_rules(path.read_text(encoding="utf-8"), source or str(path))


def read_rules(text: str, source: str) -> RuleSet:
    """The rule set in YAML ``text``, errors named after ``source`` (a file name)."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise RuleErrors([RuleError(f"YAML syntax: {error.problem or error.context}", source=where)]) from None
    marks = _marks(root)
    try:
        rules = compile_rules(data, source)
    except RuleErrors as errors:
        raise RuleErrors([_located(e, marks) for e in errors.errors]) from None
    if PINNED.get(rules.timezone) is None:
        unknown = RuleError(f"unknown time zone {rules.timezone!r}", ("timezone",), source)
        raise RuleErrors([_located(unknown, marks)]) from None
    return rules


def _marks(root: yaml.Node | None) -> dict[Path, yaml.Mark]:
    """Where each field starts: the key's position for mapping values, the item's for lists."""
    marks: dict[Path, yaml.Mark] = {}
    pending: list[tuple[Path, yaml.Node]] = [((), root)] if root is not None else []
    while pending:
        path, node = pending.pop()
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = (*path, str(key.value))
                marks[child] = key.start_mark
                pending.append((child, value))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                marks[(*path, i)] = item.start_mark
                pending.append(((*path, i), item))
    return marks


def _located(error: RuleError, marks: dict[Path, yaml.Mark]) -> RuleError:
    for depth in range(len(error.path), 0, -1):
        mark = marks.get(error.path[:depth])
        if mark is not None:
            return error.within(f"{error.source}:{mark.line + 1}:{mark.column + 1}", error.rule, error.rule_depth)
    return error
