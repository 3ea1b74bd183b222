"""``touchstream value validate`` on a real embedded store: every purchase in the log,
attributed to the customer the views resolved it to, gives the same calibration/holdout
table as the transactions themselves, and the chart is written."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from services.cli import app
from services.embedded.eventlog import TouchpointLog
from services.embedded.runner import ProjectionRunner
from services.embedded.storage.unit import ViewStore
from services.value.validation import holdout


def test_the_validation_reads_the_platform_s_purchases_and_gives_the_holdout_table(tmp_path: Path) -> None:
    rows = np.loadtxt(files("lifetimes.datasets") / "CDNOW_sample.txt", dtype=np.int64, usecols=(0, 2))
    days = [datetime.strptime(str(d), "%Y%m%d").replace(tzinfo=UTC) for d in rows[:, 1]]
    events = [{"event_id": f"s-{i}", "type": "purchase", "occurred_at": day.isoformat(timespec="microseconds"),
               "received_at": day.isoformat(timespec="microseconds"), "source": "cdnow",
               "customer": {"customer_id": f"c-{c}", "emails": [], "phones": [], "external_ids": []},
               "channel": "web", "trigger_id": None, "attributes": {}, "order_id": f"o-{i}", "amount": "10.00",
               "currency": "USD", "margin": None, "lines": []}
              for i, (c, day) in enumerate(zip(rows[:, 0], days, strict=True))]
    log, store = TouchpointLog(tmp_path / "log.sqlite"), ViewStore(tmp_path / "views.sqlite")
    log.append(events)
    ProjectionRunner(log, store, batch=2000).catch_up()

    chart = tmp_path / "holdout.svg"
    result = CliRunner().invoke(app, ["value", "validate", "--calibration-end", "1997-09-30",
                                      "--observation-end", "1998-06-30", "--chart", str(chart)],
                                env={"TOUCHSTREAM_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    at = np.array([int(d.timestamp()) * 1_000_000 for d in days], dtype=np.int64)
    direct = holdout(rows[:, 0], at, int(datetime(1997, 9, 30, tzinfo=UTC).timestamp()) * 1_000_000,
                     int(datetime(1998, 6, 30, tzinfo=UTC).timestamp()) * 1_000_000)
    assert shown == json.loads(json.dumps(direct.to_dict()))
    assert shown["customers"] == 2357 and shown["holdout_weeks"] == 39.0 and shown["rows"][-1]["frequency"] == "7+"
    assert chart.read_text().startswith("<svg") and "polyline" in chart.read_text()
