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

import numpy as np
import orjson
import typer

__all__ = ["value_app", "history_of", "chart"]

value_app = typer.Typer(help="Customer value: the purchase model (docs/VALUE.md).", no_args_is_help=True)


def history_of(log_path: Path, views_path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(customer numbers, purchase instants µs, customer ids by number) of every purchase
    the views have folded."""
    from projections.codec import instant
    from projections.view.state import micros
    from services.embedded.eventlog import TouchpointLog
    from services.embedded.viewstore import ViewStore

    store = ViewStore(views_path)
    with store.datastore.transaction(commit=False) as c:
        c.execute("SELECT position, customer_id FROM timeline")
        owner = {p: cid for p, cid in c.fetchall()}
    log, after, who, when = TouchpointLog(log_path), 0, [], []
    while page := log.read(after, 10_000):
        for record in page:
            if record.position in owner and record.topic.startswith("touchpoint/purchase@"):
                who.append(owner[record.position])
                when.append(micros(instant(orjson.loads(record.state)["occurred_at"])))
        after = page[-1].position
    ids, numbers = np.unique(np.array(who, dtype=object), return_inverse=True) if who else (np.array([]), np.array([]))
    return numbers.astype(np.int64), np.array(when, dtype=np.int64), [str(i) for i in ids]


def chart(rows: list[dict[str, object]], width: int = 480, height: int = 300) -> str:
    """Actual and predicted mean holdout purchases per calibration frequency, as SVG."""
    top = max(max(float(r["actual"]), float(r["predicted"])) for r in rows) or 1.0  # type: ignore[arg-type]
    step = (width - 60) / max(len(rows) - 1, 1)

    def line(key: str) -> str:
        return " ".join(f"{40 + i * step:.1f},{height - 30 - float(r[key]) / top * (height - 50):.1f}"  # type: ignore[arg-type]
                        for i, r in enumerate(rows))

    labels = "".join(f'<text x="{40 + i * step:.1f}" y="{height - 10}" font-size="11" text-anchor="middle">'
                     f'{r["frequency"]}</text>' for i, r in enumerate(rows))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
            f'<polyline points="{line("actual")}" fill="none" stroke="black" stroke-width="2"/>'
            f'<polyline points="{line("predicted")}" fill="none" stroke="steelblue" stroke-width="2" stroke-dasharray="6 4"/>'
            f'{labels}<text x="40" y="16" font-size="12">holdout purchases per customer: actual (solid), '
            f'BG/NBD (dashed), by calibration repeat purchases</text></svg>')


@value_app.command("validate")
def validate(
    calibration_end: Annotated[datetime, typer.Option(help="fit on purchases up to this instant (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS, UTC)")],
    observation_end: Annotated[datetime | None, typer.Option(help="end of the holdout (default: the platform's time)")] = None,
    chart_file: Annotated[Path | None, typer.Option("--chart", help="write the table as an SVG chart")] = None,
) -> None:
    """Fit BG/NBD on the calibration period and compare its predictions with the purchases
    of the holdout, per number of calibration repeat purchases (embedded runtime)."""
    from datetime import UTC

    from projections.view.state import micros
    from services.embedded.viewstore import ViewStore
    from services.settings import Settings
    from services.value.validation import holdout

    settings = Settings()
    if settings.runtime == "kafka":
        typer.echo("value validate reads the embedded runtime's log", err=True)
        raise typer.Exit(2)
    customers, at, _ = history_of(settings.log_path, settings.views_path)
    end = micros(observation_end.replace(tzinfo=observation_end.tzinfo or UTC)) if observation_end else \
        ViewStore(settings.views_path).clock()
    if end is None:
        typer.echo("no platform time yet: give --observation-end", err=True)
        raise typer.Exit(2)
    table = holdout(customers, at, micros(calibration_end.replace(tzinfo=calibration_end.tzinfo or UTC)), end)
    if chart_file is not None:
        chart_file.write_text(chart(table.rows))
    typer.echo(json.dumps(table.to_dict(), indent=2))
