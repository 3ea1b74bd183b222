"""The baseline the spine is measured against: the textbook eventsourcing way to keep a
per-customer view — load the customer aggregate, apply one event, save — one event at a
time, on the same SQLite. Same events, same machine, same run."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate, event

__all__ = ["naive_load_modify_save"]


class CustomerRecord(Aggregate):
    @staticmethod
    def create_id(customer_id: str) -> uuid.UUID:
        return uuid.uuid5(uuid.NAMESPACE_URL, customer_id)

    @event("Created")
    def __init__(self, customer_id: str) -> None:
        self.customer_id = customer_id
        self.touchpoints = 0

    @event("TouchpointRecorded")
    def record(self, touchpoint: dict[str, Any]) -> None:
        self.touchpoints += 1


class NaiveApp(Application[uuid.UUID]):
    pass


def _customer_key(ref: dict[str, Any]) -> str:
    """The naive way names the customer by its first identifier (no identity index)."""
    external = [f"{x['system']}:{x['id']}" for x in ref.get("external_ids") or ()]
    return str(ref.get("customer_id") or next(iter([*external, *ref.get("emails", ()), *ref.get("phones", ())])))


def naive_load_modify_save(events: list[dict[str, Any]], directory: Path) -> dict[str, float]:
    directory.mkdir(parents=True, exist_ok=True)
    app = NaiveApp(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite",
                        "SQLITE_DBNAME": str(directory / "naive.sqlite")})
    started = time.perf_counter()
    for document in events:
        key = _customer_key(document["customer"])
        try:
            record: CustomerRecord = app.repository.get(CustomerRecord.create_id(key))
        except AggregateNotFoundError:
            record = CustomerRecord(key)
        record.record(document)
        app.save(record)
    seconds = time.perf_counter() - started
    app.close()
    return {"events": len(events), "seconds": round(seconds, 3), "events_per_second": round(len(events) / seconds)}
