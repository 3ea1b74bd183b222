"""Segment files on disk: YAML read strictly (the rule files' loader), compiled by
``projections.segments.membership``; every error carries ``FILE:LINE:COLUMN``."""

from __future__ import annotations

from pathlib import Path

import yaml

from projections.predicates.errors import RuleError, RuleErrors
from projections.segments.membership import SegmentSet, compile_segments
from services.nbc.rules_file import _located, _marks, _StrictLoader

__all__ = ["load_segments", "read_segments"]


def load_segments(path: Path, source: str | None = None) -> SegmentSet:
    """The segments in the YAML file at ``path``; ``RuleErrors`` with positions if any."""
    return read_segments(path.read_text(encoding="utf-8"), source or str(path))


def read_segments(text: str, source: str) -> SegmentSet:
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise RuleErrors([RuleError(f"YAML syntax: {error.problem or error.context}", source=where)]) from None
    marks = _marks(root)
    try:
        return compile_segments(data, source)
    except RuleErrors as errors:
        raise RuleErrors([_located(e, marks) for e in errors.errors]) from None
