"""The automatic merge policy on the embedded runner, over a real SQLite log and view store.

Policy: an external id alone merges, an email needs a second identifier of the same event,
a phone never merges by itself. Four customers, then events whose identifiers belong to
several of them: each decision the policy takes is a ``customer_merged`` appended after
the conflicting event, with its rule and evidence; what it does not decide stays a listed
conflict. A decision committed but not yet appended (a crash in between) is appended once
at the next start, and a rebuild from the log (no policy: it folds the decisions) gives
the same views."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from projections.merge_policy import MergePolicy
from services.api.contracts import TOUCHPOINT_ADAPTER, to_canonical
from services.embedded.eventlog import TouchpointLog
from services.embedded.runner import ProjectionRunner, fold_records
from services.embedded.storage.unit import ViewStore
from services.settings import Settings
from services.view_cache import ViewCache
from tests.support.api import call

POLICY = MergePolicy({"external_id": "alone", "email": "with_another", "phone": "never"})
DAY = datetime(2026, 3, 2, 10, tzinfo=UTC)


def _call(event_id: str, hours: int, customer: dict[str, Any]) -> dict[str, Any]:
    raw = call(event_id, DAY + timedelta(hours=hours), customer, direction="inbound")
    return to_canonical(TOUCHPOINT_ADAPTER.validate_python(raw), datetime.now(UTC))


FOUR = [_call("ana-1", 0, {"emails": ["ana@example.com"], "phones": ["+33611111111"]}),
        _call("bob-1", 1, {"external_ids": [{"system": "crm", "id": "1"}]}),
        _call("carl-1", 2, {"emails": ["carl@example.com"], "phones": ["+33622222222"]}),
        _call("dan-1", 3, {"external_ids": [{"system": "crm", "id": "9"}]})]
LINKING = [
    # bob's external id and ana's email: an email alone does not merge (conflict stays)
    _call("x-email-alone", 4, {"external_ids": [{"system": "crm", "id": "1"}], "emails": ["ana@example.com"]}),
    # bob's external id and carl's email and phone: two identifiers agree -> carl into bob
    _call("x-email-and-phone", 5, {"external_ids": [{"system": "crm", "id": "1"}], "emails": ["carl@example.com"],
                                   "phones": ["+33622222222"]}),
    # dan's external id and ana's phone: a phone never merges (conflict stays)
    _call("x-phone", 6, {"external_ids": [{"system": "crm", "id": "9"}], "phones": ["+33611111111"]}),
    # dan's and bob's external ids: an external id alone -> bob (with carl) into dan
    _call("x-external", 7, {"external_ids": [{"system": "crm", "id": "9"}, {"system": "crm", "id": "1"}]}),
]


def test_the_policy_merges_what_it_is_set_to_and_explains_each_decision(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    log, store = TouchpointLog(tmp_path / "log.sqlite"), ViewStore(tmp_path / "views.sqlite")
    log.append(FOUR)
    runner = ProjectionRunner(log, store, settings.fold_config(), policy=POLICY)
    runner.catch_up()
    names = [("email", "ana@example.com"), ("external_id", "crm:1"), ("email", "carl@example.com"),
             ("external_id", "crm:9")]
    owners = store.identity.owners(names)
    ana, bob, carl, dan = (owners[n] for n in names)
    log.append(LINKING)
    runner.catch_up()

    assert runner.merges.root(carl) == dan and runner.merges.root(bob) == dan and runner.merges.root(ana) == ana
    records = [orjson.loads(r.state) for r in log.read(0, 100) if r.topic.startswith("identity/")]
    assert [(r["survivor"], r["absorbed"], r["cause"], r["actor"]) for r in records] == [
        (bob, carl, "policy", "policy:email"), (dan, bob, "policy", "policy:external_id")]
    assert records[0]["evidence"]["rule"] == "email: with_another"
    assert records[0]["evidence"]["identifiers"] == ["email", "phone"]
    assert records[1]["evidence"] == {"event_id": "x-external", "rule": "external_id: alone",
                                      "identifiers": ["external_id"],
                                      "conflict_position": records[1]["evidence"]["conflict_position"]}
    positions = {r.position: orjson.loads(r.state)["event_id"] for r in log.read(0, 100)}
    assert positions[records[1]["evidence"]["conflict_position"]] == "x-external"
    # each decision comes after the event that prompted it
    order = list(positions.values())
    assert order.index(f"merge/{records[0]['merge_id']}") > order.index("x-email-and-phone")
    # dan's card holds bob's and carl's events; ana's stays her own
    dan_view = orjson.loads(store.customers.state(dan) or b"{}")
    assert dan_view["touchpoints"] == 3 + len(LINKING)  # dan, bob, carl, and every linking event
    assert store.customers.state(bob) is None and store.customers.state(carl) is None
    assert orjson.loads(store.customers.state(ana) or b"{}")["touchpoints"] == 1
    # what the policy did not decide stays listed
    listed = {row["event_id"] for row in store.identity.conflicts(limit=100)}
    assert {"x-email-alone", "x-phone"} <= listed
    assert store.identity.outbox() == []

    # a rebuild from the log takes no decision: it folds those the log holds
    rebuilt = ViewStore(tmp_path / "rebuilt.sqlite")
    ProjectionRunner(log, rebuilt, settings.fold_config()).catch_up()
    for customer in (ana, bob, carl, dan):
        assert rebuilt.customers.state(customer) == store.customers.state(customer)


def test_a_decision_committed_before_a_crash_is_appended_once_at_the_next_start(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    log, store = TouchpointLog(tmp_path / "log.sqlite"), ViewStore(tmp_path / "views.sqlite")
    log.append(FOUR)
    ProjectionRunner(log, store, settings.fold_config()).catch_up()
    log.append(LINKING[-1:])  # dan's and bob's external ids
    # what run_once commits, then the process dies before the append
    records = log.read(store.position(), 10)
    changes = fold_records(records, store, ViewCache(store, 1 << 20), settings.fold_config(), policy=POLICY)
    store.commit(changes)
    assert len(store.identity.outbox()) == 1 and log.head() == len(FOUR) + 1

    restarted = ProjectionRunner(log, store, settings.fold_config(), policy=POLICY)
    restarted.start()
    try:
        assert restarted.wait_for(log.head(), 10) and log.head() == len(FOUR) + 2
    finally:
        restarted.stop()
    assert store.identity.outbox() == []
    document = orjson.loads(log.read(len(FOUR) + 1, 1)[0].state)
    assert document["type"] == "customer_merged" and document["cause"] == "policy"
    # appended again (a crash between the append and the clean-up): the log keeps one
    assert log.append([document])[0].duplicate
