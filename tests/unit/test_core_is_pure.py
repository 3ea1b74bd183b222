"""House rule 1: the functional core imports only the standard library and itself."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "projections"
FORBIDDEN = re.compile(r"datetime\.now|utcnow|time\.time\(|\brandom\.|uuid4|(?<![\w.])open\(")


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_core_imports_only_the_standard_library() -> None:
    allowed = set(sys.stdlib_module_names) | {"projections", "__future__"}
    offenders = {p.name: imported_roots(p) - allowed for p in CORE.rglob("*.py") if imported_roots(p) - allowed}
    assert offenders == {}
    assert len(list(CORE.rglob("*.py"))) >= 5


def test_the_core_reads_no_clock_and_no_randomness() -> None:
    hits = [(p.name, m.group()) for p in CORE.rglob("*.py") for m in FORBIDDEN.finditer(p.read_text())]
    assert hits == []
