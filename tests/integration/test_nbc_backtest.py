"""Live versus backtest on real SQLite: the embedded runner folding a history as it arrives
(in event time, clock ticks every 10 minutes) decides the same triggers, with the same ids, as
``touchstream backtest`` replaying that history in event time with exact deadlines; and
the backtest reports what it promises."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from projections.batch import FoldConfig
from projections.codec import instant
from projections.nbc.engine import ContactEngine
from services.embedded.eventlog import TouchpointLog, tick_document
from services.embedded.runner import ProjectionRunner
from services.embedded.storage.unit import ViewStore
from services.nbc.backtest import run_backtest
from services.nbc.history import embedded_history
from services.nbc.rules_file import load_rules
from services.settings import DEFAULT_RULES_FILE, Settings
from services.zones import PINNED
from tools.traffic import TrafficOptions, generate

START = datetime(2025, 1, 1, tzinfo=UTC)
END = START + timedelta(days=60)
TICK = timedelta(minutes=10)


def in_arrival_order() -> list[dict[str, Any]]:
    """The traffic in event time, a clock tick every TICK between events."""
    events = sorted(({"received_at": e["occurred_at"], **e}
                     for e in generate(TrafficOptions(customers=250, events=6000, seed=5, days=60,
                                                      duplicate_rate=0.0, late_rate=0.0))),
                    key=lambda e: instant(e["occurred_at"]))
    out: list[dict[str, Any]] = []
    clock = START
    for event in events:
        when = instant(event["occurred_at"])
        while clock + TICK <= when:
            clock += TICK
            out.append(tick_document(clock, clock))
        out.append(event)
    while clock + TICK <= END:
        clock += TICK
        out.append(tick_document(clock, clock))
    return out


@pytest.fixture(scope="module")
def platform_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("nbc-backtest")
    settings = Settings(data_dir=root)
    log = TouchpointLog(settings.log_path)
    log.append(in_arrival_order())
    store = ViewStore(settings.views_path)
    ProjectionRunner(log, store, settings.fold_config(), batch=500).catch_up()
    store.datastore.close()
    log.close()
    return root


def live_trigger_ids(root: Path) -> list[str]:
    store = ViewStore(Settings(data_dir=root).views_path)
    try:
        return sorted(orjson.loads(doc)["trigger_id"] for _, doc in store.contacts.triggers(limit=1_000_000))
    finally:
        store.datastore.close()


def backtest_config(settings: Settings) -> FoldConfig:
    return FoldConfig(settings.lifecycle(), ContactEngine(load_rules(DEFAULT_RULES_FILE), PINNED), currency=None)


def test_live_and_backtest_decide_the_same_triggers(platform_dir: Path) -> None:
    settings = Settings(data_dir=platform_dir)
    report = run_backtest(embedded_history(settings), backtest_config(settings), START, END)
    live = live_trigger_ids(platform_dir)
    assert len(live) > 50
    assert report["trigger_ids"] == live
    fired = report["would_fire"]["per_rule"]
    assert len(fired) >= 4, fired  # several kinds of rules had something to decide
    assert sum(fired.values()) == len(live)
    assert sum(report["would_fire"]["per_channel"].values()) == len(live)
    assert sum(n for day in report["would_fire"]["per_day"].values() for n in day.values()) == len(live)


def test_a_narrower_window_reports_the_triggers_inside_it(platform_dir: Path) -> None:
    settings = Settings(data_dir=platform_dir)
    config = backtest_config(settings)
    history = embedded_history(settings)
    whole = run_backtest(history, config, START, END)
    first = run_backtest(history, config, START, START + timedelta(days=30))
    second = run_backtest(history, config, START + timedelta(days=30), END)
    assert sorted(first["trigger_ids"] + second["trigger_ids"]) == whole["trigger_ids"]
    assert first["trigger_ids"] and second["trigger_ids"]


def test_the_backtest_command_prints_json_and_a_table(platform_dir: Path) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TOUCHSTREAM_")},
           "TOUCHSTREAM_DATA_DIR": str(platform_dir)}
    command = [sys.executable, "-m", "services.cli", "backtest", str(DEFAULT_RULES_FILE),
               "--from", START.date().isoformat(), "--to", END.date().isoformat()]
    done = subprocess.run([*command, "--format", "json"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["trigger_ids"] == live_trigger_ids(platform_dir)
    assert report["call_centre"]["peak_hour"]["calls"] >= 1
    assert set(report["suppressed_by_reason"]) <= {"not_eligible", "suppression", "no_consent", "consent_withdrawn",
                                                    "expired", "quiet_hours", "cooldown", "cap_per_channel",
                                                    "cap_overall", "arbitration", "timers_full"}
    table = subprocess.run([*command, "--format", "table"], capture_output=True, text=True, env=env, timeout=300)
    assert table.returncode == 0, table.stderr
    assert "would fire" in table.stdout and "call centre:" in table.stdout
    bad = subprocess.run([*command[:-4], "--from", "2025-02-01", "--to", "2025-01-01"], capture_output=True,
                         text=True, env=env, timeout=60)
    assert bad.returncode == 2 and "--from must be before --to" in bad.stderr
