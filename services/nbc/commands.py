"""``touchstream rules check FILE``: is a next-best-contact rule file ready to use?

Prints ``OK`` with what the file holds (and the facts it reads that the view does not
hold yet) and exits 0, or prints every error (one per broken
rule, ``FILE:LINE:COLUMN: rule ID (vN): FIELD: problem``) on stderr and exits 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["rules_app"]

rules_app = typer.Typer(help="Next-best-contact rule files (docs/RULES.md).", no_args_is_help=True)


@rules_app.command("check")
def check(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                               help="a YAML rule file, e.g. rules/default.yaml")]) -> None:
    """Compile a rule file: OK with counts, or every error with its line and exit status 1."""
    from projections.facts import FACTS
    from projections.nbc_rules import RuleErrors
    from services.nbc.rules_file import load_rules

    try:
        rules = load_rules(file)
    except RuleErrors as errors:
        for error in errors.errors:
            typer.echo(str(error), err=True)
        typer.echo(f"{file}: {len(errors.errors)} error{'s' * (len(errors.errors) != 1)}", err=True)
        raise typer.Exit(1) from None
    kinds = ", ".join(f"{kind} {len(held)}" for kind, held in rules.by_trigger_kind.items() if held)
    suppressions = len(rules.suppressions)
    count = len(rules.rules)
    typer.echo(f"{file}: OK, version {rules.version}: {count} rule{'s' * (count != 1)} ({kinds}), "
               f"{suppressions} suppression{'s' * (suppressions != 1)}")
    supplied = sorted(name for name in rules.facts if getattr(FACTS.find(name), "source", None) == "caller")
    if supplied:  # a rule reading them matches no one until the engine computes them
        typer.echo(f"{file}: note: facts not on the view yet, the engine must supply them: {', '.join(supplied)}")
