"""``touchstream value validate --calibration-end DATE``: the purchase model checked on
purchases it has not seen (``services.value.validation``), on the platform's own history.

Embedded runtime: every purchase in the log, attributed to the customer the views
resolved it to (the timeline index), read while the platform runs. Prints the table as
JSON — per number of repeat purchase days in the calibration period, the customers and
their mean actual and predicted purchase days in the holdout — and, with ``--chart``,
writes it as an SVG chart.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["value_app"]

value_app = typer.Typer(help="Customer value: the purchase model (docs/VALUE.md).", no_args_is_help=True)


@value_app.command("validate")
def validate(
    calibration_end: Annotated[datetime, typer.Option(
        help="fit on purchases up to this instant (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS, UTC)")],
    observation_end: Annotated[datetime | None, typer.Option(
        help="end of the holdout (default: the platform's time)")] = None,
    chart_file: Annotated[Path | None, typer.Option("--chart", help="write the table as an SVG chart")] = None,
) -> None:
    """Fit BG/NBD on the calibration period and compare its predictions with the purchases
    of the holdout, per number of calibration repeat purchases (embedded runtime)."""
    from datetime import UTC

    from projections.view.state import micros
    from services.embedded.eventlog import TouchpointLog
    from services.embedded.purchase_log import purchases
    from services.embedded.storage.unit import ViewStore
    from services.settings import Settings
    from services.value.validation import chart, customer_numbers, holdout

    settings = Settings()
    if settings.runtime == "kafka":
        typer.echo("value validate reads the embedded runtime's log", err=True)
        raise typer.Exit(2)
    store = ViewStore(settings.views_path)
    who, at = purchases(TouchpointLog(settings.log_path), store)
    end = micros(observation_end.replace(tzinfo=observation_end.tzinfo or UTC)) if observation_end else store.clock()
    if end is None:
        typer.echo("no platform time yet: give --observation-end", err=True)
        raise typer.Exit(2)
    start = micros(calibration_end.replace(tzinfo=calibration_end.tzinfo or UTC))
    table = holdout(customer_numbers(who), at, start, end)
    if chart_file is not None:
        chart_file.write_text(chart(table.rows))
    typer.echo(json.dumps(table.to_dict(), indent=2))
