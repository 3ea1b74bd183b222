"""``touchstream rules check FILE``: is a next-best-contact rule file ready to use?

Prints ``OK`` with what the file holds (and the facts it reads that the view does not
hold yet) and exits 0, or prints every error (one per broken
rule, ``FILE:LINE:COLUMN: rule ID (vN): FIELD: problem``) on stderr and exits 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["rules_app", "backtest"]

rules_app = typer.Typer(help="Next-best-contact rule files (docs/RULES.md).", no_args_is_help=True)


@rules_app.command("check")
def check(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                               help="a YAML rule file, e.g. rules/default.yaml")]) -> None:
    """Compile a rule file: OK with counts, or every error with its line and exit status 1."""
    from projections.nbc.rules import RuleErrors
    from projections.predicates.facts import FACTS
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


def backtest(
    rules: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                          help="the rule file to try, e.g. rules/default.yaml")],
    start: Annotated[str, typer.Option("--from", help="first instant reported (ISO 8601, e.g. 2026-01-01)")],
    end: Annotated[str, typer.Option("--to", help="end of the period reported, excluded (ISO 8601)")],
    output: Annotated[str, typer.Option("--format", help="json or table")] = "table",
) -> None:
    """Replay the recorded history in event time with RULES and report what they would
    have decided (would-fire counts per rule, channel and day, suppressions by reason,
    overlaps, the call centre's peak hour). Emits nothing. The runtime's settings say
    where the history is (TOUCHSTREAM_RUNTIME, data directory or Kafka)."""
    import asyncio
    import json
    from datetime import UTC, datetime

    from projections.batch import FoldConfig
    from projections.nbc.engine import ContactEngine
    from projections.nbc.rules import RuleErrors
    from services.logging import configure_logging
    from services.nbc.backtest import render_table, run_backtest
    from services.nbc.history import embedded_history, kafka_history
    from services.nbc.rules_file import load_rules
    from services.settings import Settings
    from services.zones import PINNED

    def moment(text: str, option: str) -> datetime:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise typer.BadParameter(f"expected an ISO 8601 date or instant, got {text!r}", param_hint=option) from None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)

    first, last = moment(start, "--from"), moment(end, "--to")
    if first >= last:
        raise typer.BadParameter("--from must be before --to", param_hint="--from")
    if output not in ("json", "table"):
        raise typer.BadParameter("json or table", param_hint="--format")
    try:
        rule_set = load_rules(rules)
    except RuleErrors as errors:
        for error in errors.errors:
            typer.echo(str(error), err=True)
        raise typer.Exit(1) from None
    settings = Settings()
    configure_logging("warning", settings.log_format)
    if settings.runtime == "kafka":
        history = asyncio.run(kafka_history(settings))
    else:
        if not settings.log_path.exists():
            typer.echo(f"no log at {settings.log_path}: nothing to backtest", err=True)
            raise typer.Exit(2)
        history = embedded_history(settings)
    engine = ContactEngine(rule_set, PINNED, settings.nbc_attribution_days)
    from services.progress import meter

    with meter(f"folding {len(history):,} events in event time"):  # one fold_batch: a spinner and the time
        report = run_backtest(history, FoldConfig(settings.lifecycle(), engine, currency=None),
                              first, last)
    if output == "json":
        typer.echo(json.dumps(report, indent=2))
    else:
        for line in render_table(report):
            typer.echo(line)
