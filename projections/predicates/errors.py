"""Errors of rule and segment files, each naming the exact place of the mistake.

``RuleError`` carries the field path from the root of the file (``("rules", 0, "who",
"all", 1, "gte")``) so a shell can map it to a line; its message names the file, the rule
(id and version) and the field within the rule::

    rules/default.yaml: rule welcome (v2): who.all[1].gte: expected a number, got 'two'

``RuleErrors`` gathers the first error of every rule of a file, so one check lists them all.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Path", "RuleError", "RuleErrors", "render_path", "describe"]

Path = tuple[str | int, ...]


def render_path(path: Path) -> str:
    """``("who", "all", 1, "gte")`` -> ``who.all[1].gte``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def describe(value: Any) -> str:
    """A value as a message quotes it: strings quoted, mappings and lists by kind."""
    if isinstance(value, dict):
        return "a mapping" if value else "an empty mapping"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    if value is None:
        return "nothing"
    return repr(value) if not isinstance(value, bool) else str(value).lower()


class RuleError(ValueError):
    """One mistake: where (``source``; ``rule``, the label of the rule it is in, such as
    ``rule welcome (v2)``; ``path``) and what (``message``)."""

    def __init__(self, message: str, path: Path = (), source: str = "", rule: str | None = None,
                 rule_depth: int = 0) -> None:
        self.message, self.path, self.source, self.rule, self.rule_depth = message, path, source, rule, rule_depth
        super().__init__(str(self))

    @property
    def field(self) -> str:
        """The path within the rule (the whole path when the error is outside any rule)."""
        return render_path(self.path[self.rule_depth:])

    def within(self, source: str, rule: str | None = None, rule_depth: int = 0) -> RuleError:
        """The same error, placed in a file and a rule (``rule_depth``: how many leading
        path parts lead to the rule, left out of ``field``)."""
        return RuleError(self.message, self.path, source, rule, rule_depth if rule else 0)

    def __str__(self) -> str:
        parts = [self.source] if self.source else []
        if self.rule:
            parts.append(self.rule)
        if self.field:
            parts.append(self.field)
        return ": ".join([*parts, self.message])


class RuleErrors(ValueError):
    """Every error found in one file, in file order."""

    def __init__(self, errors: list[RuleError]) -> None:
        self.errors = tuple(errors)
        super().__init__("\n".join(map(str, self.errors)))
