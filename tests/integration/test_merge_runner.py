"""The embedded runner folding merges from a real SQLite log: two merges that raced each
other at the API (each valid alone) — the second is a dead letter with the graph's
reason, nothing else changes; an undo puts every figure back."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson

from services.api.contracts import TOUCHPOINT_ADAPTER, to_canonical
from services.embedded.eventlog import TouchpointLog, merge_document, unmerge_document
from services.embedded.runner import ProjectionRunner
from services.embedded.storage.unit import ViewStore
from services.settings import Settings
from tools.traffic import TrafficOptions, generate


def _events(customer: str, count: int) -> list[dict[str, object]]:
    received = datetime.now(UTC)
    return [to_canonical(TOUCHPOINT_ADAPTER.validate_python(
        {**raw, "event_id": f"{customer}-{raw['event_id']}", "customer": {"customer_id": customer}}), received)
        for raw in generate(TrafficOptions(customers=1, events=count, seed=len(customer), duplicate_rate=0.0))]


def test_a_merge_that_lost_a_race_is_a_dead_letter_and_an_undo_restores_every_figure(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    log, store = TouchpointLog(tmp_path / "log.sqlite"), ViewStore(tmp_path / "views.sqlite")
    log.append(_events("ana", 30) + _events("bob", 40))
    runner = ProjectionRunner(log, store, settings.fold_config())
    runner.catch_up()
    before = {c: store.customers.state(c) for c in ("ana", "bob")}
    stages, cells = store.lifecycle.stage_counts(), store.value.rfm_cells()
    now = datetime.now(UTC)
    log.append([merge_document("mrg_1", "ana", "bob", "same person", "agent-1", now),
                merge_document("mrg_2", "bob", "ana", "same person", "agent-2", now)])  # raced the first
    runner.catch_up()
    assert store.customers.state("bob") is None and runner.merges.root("bob") == "ana"
    merged = orjson.loads(store.customers.state("ana") or b"{}")
    assert merged["touchpoints"] == 70
    letter = store.dead_letters.rows()[-1]
    assert letter["event_id"] == "merge/mrg_2" and letter["reason"].startswith("merge_refused: survivor_merged: ")
    assert sum(store.lifecycle.stage_counts().values()) == sum(stages.values()) - 1  # bob counted once, in ana
    assert store.identity.merge("mrg_1")["undone_position"] is None and store.identity.merge("mrg_2") is None

    log.append([unmerge_document("mrg_1", "two people", "agent-1", now)])
    runner.catch_up()
    assert {c: store.customers.state(c) for c in ("ana", "bob")} == before  # byte for byte
    assert store.lifecycle.stage_counts() == stages and store.value.rfm_cells() == cells
    assert store.identity.merge("mrg_1")["undo_reason"] == "two people" and runner.merges.into == {}
    assert ProjectionRunner(log, store, settings.fold_config()).merges.into == {}  # as a restart reads it
