"""The layout shows the architecture: one core, two runtimes as adapters around it, tooling
outside the production import graph, and one batch fold."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (function bodies included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_production_code_never_imports_the_tooling() -> None:
    """Only the command line reaches into tools/, to expose its commands (bench, generate, up)."""
    offenders = {str(p.relative_to(ROOT)) for p in modules("services") if any(m.split(".")[0] == "tools"
                                                                              for m in imports(p))}
    assert offenders == {"services/cli.py"}


def test_the_two_runtimes_do_not_import_each_other() -> None:
    for runtime, other in (("embedded", "scaleout"), ("scaleout", "embedded")):
        offenders = {str(p.relative_to(ROOT)) for p in modules(f"services/{runtime}")
                     if any(m.startswith(f"services.{other}") for m in imports(p))}
        assert offenders == set(), f"services/{runtime} imports services/{other}"


def test_the_core_imports_nothing_of_the_shell() -> None:
    offenders = {str(p.relative_to(ROOT)) for p in modules("projections")
                 if any(m.split(".")[0] in ("services", "tools") for m in imports(p))}
    assert offenders == set()


def test_fold_batch_is_the_only_batch_fold_in_production_code() -> None:
    """Every runtime, replay and backtest calls ``projections.batch.fold_batch``; none folds
    events or ticks itself."""
    folding = {"fold_event", "fold_tick", "evolve", "tick"}
    offenders: dict[str, set[str]] = {}
    for path in modules("services"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        called = {n.func.id if isinstance(n.func, ast.Name) else n.func.attr
                  for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, (ast.Name, ast.Attribute))}
        if called & folding:
            offenders[str(path.relative_to(ROOT))] = called & folding
    assert offenders == {}
    callers = {str(p.relative_to(ROOT)) for p in modules("services") if "fold_batch(" in p.read_text(encoding="utf-8")}
    assert callers == {"services/embedded/runner.py", "services/scaleout/worker/fold.py",
                       "services/scaleout/worker/replay.py", "services/nbc/backtest.py"}


def test_every_file_the_code_reads_beside_itself_is_where_it_looks() -> None:
    from services.contracts.registry import SCHEMAS_DIR
    from services.metrics_catalogue import METRICS_DOC
    from services.scaleout.kafka.topics import TOPICS_FILE
    from services.settings import DEFAULT_RULES_FILE, SEGMENTS_FILE

    for path in (SCHEMAS_DIR, METRICS_DOC, TOPICS_FILE, DEFAULT_RULES_FILE, SEGMENTS_FILE):
        assert path.exists(), path
