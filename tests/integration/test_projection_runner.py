"""The projection runner on real SQLite: exactly-once, dead letters, identity, replay."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
from eventsourcing.persistence import StoredEvent

from projections.codec import to_dict
from projections.touchpoints import CustomerRef
from projections.view.document import from_state
from services.embedded.eventlog import TouchpointLog, stream_id
from services.embedded.replay import verify
from services.embedded.runner import ProjectionRunner
from services.embedded.storage.unit import VIEW_FORMAT, ViewStore, open_current
from services.settings import Settings
from tests.support.server import REPO_ROOT
from tests.support.touchpoints import at, call, purchase, survey


def ref(**kw) -> CustomerRef:  # type: ignore[no-untyped-def]
    return CustomerRef(**kw)


def open_all(tmp: Path, batch: int = 100) -> tuple[TouchpointLog, ViewStore, ProjectionRunner]:
    log, store = TouchpointLog(tmp / "log.sqlite"), ViewStore(tmp / "views.sqlite")
    return log, store, ProjectionRunner(log, store, batch=batch)


def history(customers: int = 30, per_customer: int = 7) -> list[dict]:  # type: ignore[type-arg]
    docs = []
    for c in range(customers):
        who = ref(customer_id=f"c{c}", emails=(f"p{c}@example.com",))
        for n in range(per_customer):
            event = purchase(f"p-{c}-{n}", at(n), "10.00", ref=who) if n % 2 else call(f"k-{c}-{n}", at(n), ref=who)
            docs.append(to_dict(event))
    return docs


def view_of(store: ViewStore, customer_id: str):  # type: ignore[no-untyped-def]
    return from_state(orjson.loads(store.customers.state(customer_id)))  # type: ignore[arg-type]


def test_the_runner_folds_the_log_into_views_and_tracks_the_position(tmp_path: Path) -> None:
    log, store, runner = open_all(tmp_path)
    log.append(history())
    runner.catch_up()
    assert store.position() == log.head() == 210
    assert store.customers.count() == 30
    assert view_of(store, "c3").touchpoints == 7 and view_of(store, "c3").purchases == 3


def test_a_restarted_runner_resumes_where_the_last_commit_ended_and_counts_nothing_twice(tmp_path: Path) -> None:
    log, store, runner = open_all(tmp_path, batch=50)
    log.append(history())
    runner.run_once()
    runner.run_once()
    store.datastore.close()
    store = ViewStore(tmp_path / "views.sqlite")
    runner = ProjectionRunner(log, store, batch=50)
    assert runner.position == 100
    runner.catch_up()
    assert sum(view_of(store, f"c{c}").touchpoints for c in range(30)) == 210


def test_batch_size_does_not_change_the_views(tmp_path: Path) -> None:
    digests = []
    for batch in (1, 7, 1000):
        log, store, runner = open_all(tmp_path / str(batch), batch=batch)
        log.append(history(10, 5))
        runner.catch_up()
        digests.append(store.digest()[1])
    assert len(set(digests)) == 1


def test_a_damaged_record_becomes_a_dead_letter_and_the_runner_goes_on(tmp_path: Path) -> None:
    log, store, runner = open_all(tmp_path)
    log.append(history(2, 2))
    bad = {**to_dict(survey("s-bad", at(1), csat=3)), "occurred_at": "yesterday"}
    log.touchpoints.append_new([
        StoredEvent(stream_id("garbage"), 1, "touchpoint/call@1", b"\x00not json"),
        StoredEvent(stream_id("s-bad"), 1, "touchpoint/survey@1", orjson.dumps(bad)),
    ])
    log.append(history(3, 2)[4:])
    runner.catch_up()
    dead = store.dead_letters.rows()
    assert [(d["position"], d["event_id"]) for d in dead] == [(5, None), (6, "s-bad")]
    assert all(d["reason"].startswith("undecodable") for d in dead)
    assert store.position() == log.head() and view_of(store, "c2").touchpoints == 2


def test_identifiers_resolve_events_without_a_customer_id(tmp_path: Path) -> None:
    log, store, runner = open_all(tmp_path)
    log.append([to_dict(call("k1", at(0), ref=ref(customer_id="c1", emails=("ana@example.com",)))),
                to_dict(purchase("p1", at(1), ref=ref(emails=("ana@example.com",), phones=("+33612345678",)))),
                to_dict(purchase("p2", at(2), ref=ref(phones=("+33612345678",))))])
    runner.catch_up()
    view = view_of(store, "c1")
    assert (view.touchpoints, view.purchases, view.phones) == (3, 2, frozenset({"+33612345678"}))
    assert store.identity.owners([("phone", "+33612345678")]) == {("phone", "+33612345678"): "c1"}


def test_identity_conflicts_are_recorded_and_nothing_is_merged(tmp_path: Path) -> None:
    log, store, runner = open_all(tmp_path)
    log.append([to_dict(call("a", at(0), ref=ref(customer_id="c1", emails=("ana@example.com",)))),
                to_dict(call("b", at(0), ref=ref(customer_id="c2", phones=("+33699999999",)))),
                to_dict(call("x", at(1), ref=ref(emails=("ana@example.com",), phones=("+33699999999",))))])
    runner.catch_up()
    conflicts = store.identity.conflicts()
    assert [(c["event_id"], c["customer_id"]) for c in conflicts] == [("x", "c1")]
    assert orjson.loads(conflicts[0]["detail"]) == [{"kind": "phone", "owner": "c2"}]
    assert view_of(store, "c1").phones == frozenset() and view_of(store, "c2").touchpoints == 1


def test_a_replay_into_a_fresh_store_gives_byte_identical_views(tmp_path: Path) -> None:
    log, store, runner = open_all(tmp_path, batch=64)
    log.append(history())
    runner.catch_up()
    fresh = ViewStore(tmp_path / "rebuilt.sqlite")
    ProjectionRunner(log, fresh, batch=999).catch_up()
    assert fresh.digest() == store.digest()
    assert fresh.identity.count() == store.identity.count() == 30


def test_touchstream_replay_names_the_customer_and_field_a_corrupted_view_differs_in(tmp_path: Path) -> None:
    """``touchstream replay`` (embedded) compares at the live store's position: events
    appended since are lag, not a difference; a view changed behind the runner's back is
    named with the field that differs, and the command exits 1."""
    settings = Settings(data_dir=tmp_path)
    log, store = TouchpointLog(settings.log_path), ViewStore(settings.views_path)
    log.append(history(customers=10, per_customer=5))
    ProjectionRunner(log, store, settings.fold_config(), batch=64).catch_up()
    log.append([to_dict(call("late", at(9), ref=ref(customer_id="c1")))])

    report = verify(settings)  # the appended event is not folded: lag, not a difference
    assert report["identical"] is True and report["differing_customers"] == 0, report
    assert report["position"] == 50 and report["lag"] == {"log": {"stored": 50, "end": 51}}, report
    assert report["customers"] == report["live_customers"] == 10

    corrupted = orjson.loads(store.customers.state("c3") or b"null")
    corrupted["touchpoints"] += 1
    with store.datastore.transaction(commit=True) as c:
        c.execute("UPDATE customer_views SET state=? WHERE customer_id='c3'", (orjson.dumps(corrupted),))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TOUCHSTREAM_")}
    done = subprocess.run([sys.executable, "-m", "services.cli", "replay"], cwd=REPO_ROOT, capture_output=True,
                          env={**environment, "TOUCHSTREAM_DATA_DIR": str(tmp_path)}, timeout=60, check=False)
    report = json.loads(done.stdout)
    assert done.returncode == 1, (done.returncode, report, done.stderr[-2000:])
    assert report["identical"] is False and report["differing_customers"] == 1, report
    assert report["differences"] == [{"customer_id": "c3", "fields": ["touchpoints"], "fields_differing": 1}]


def test_a_waiting_reader_is_released_when_the_position_is_reached(tmp_path: Path) -> None:
    log, store, runner = open_all(tmp_path)
    runner.start()
    try:
        last = log.append(history(1, 3))[-1].position
        runner.notify()
        assert runner.wait_for(last, timeout=5)
        assert not runner.wait_for(last + 1, timeout=0.05)
    finally:
        runner.stop()


def test_a_view_store_of_an_older_format_is_set_aside_and_rebuilt_from_the_log(tmp_path: Path) -> None:
    log, store, runner = open_all(tmp_path)
    log.append(history(customers=5, per_customer=3))
    runner.catch_up()
    with store.datastore.transaction(commit=True) as c:  # as a store folded before formats were recorded
        c.execute("DELETE FROM runner_state WHERE name='view_format'")
    store.datastore.close()

    reopened = open_current(tmp_path / "views.sqlite")
    assert reopened.position() == 0 and reopened.format == VIEW_FORMAT
    assert (tmp_path / "views.sqlite.format1").exists()
    ProjectionRunner(log, reopened, batch=100).catch_up()
    assert reopened.customers.count() == 5 and reopened.position() == log.head()
    assert open_current(tmp_path / "views.sqlite").position() == log.head()  # current: kept as it is


def test_a_record_that_fails_after_the_engine_decided_commits_nothing_of_its_decisions(tmp_path: Path) -> None:
    """A purchase of 600 starts a satisfaction call due three days later; a record with an
    amount that cannot be compared ("NaN") arrives on day 4: folding it fires the due call
    on its way, then fails. It is a dead letter, and neither the call nor its figure is
    committed; the next good record decides the call, once."""
    log, store = TouchpointLog(tmp_path / "log.sqlite"), ViewStore(tmp_path / "views.sqlite")
    settings = Settings(data_dir=tmp_path)
    runner = ProjectionRunner(log, store, settings.fold_config(), batch=1)
    who = ref(customer_id="c1", emails=("c1@example.com",))
    broken = {**to_dict(purchase("p2", at(4), "10.00", ref=who)), "amount": "NaN"}
    log.append([to_dict(purchase("p1", at(0), "600.00", ref=who)), broken])
    runner.catch_up()
    assert [(r["event_id"], r["reason"].split(":")[0]) for r in store.dead_letters.rows()] == [("p2", "unfoldable")]
    assert store.contacts.triggers(limit=10) == []
    assert not [k for k in store.contacts.figures() if k[0] == "satisfaction_call_after_high_value_purchase"]
    log.append([to_dict(call("k1", at(4, 1), ref=who))])
    runner.catch_up()
    fired = [orjson.loads(doc)["rule"]["id"] for _, doc in store.contacts.triggers(limit=10)]
    assert fired == ["satisfaction_call_after_high_value_purchase"]
    assert store.contacts.figures()[("satisfaction_call_after_high_value_purchase", 1, "call", "fired")] == 1
