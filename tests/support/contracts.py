"""Contract suites every adapter of a kind passes (subclass per backend, as in eventsourcing's
own ``tests/persistence.py``): the embedded SQLite adapters today, the scale-out ones next."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from projections.codec import to_dict
from tests.support.touchpoints import at, call, purchase


def documents(*ids: str) -> list[dict[str, Any]]:
    return [to_dict(purchase(i, at(n)) if n % 2 else call(i, at(n))) for n, i in enumerate(ids)]


class TouchpointLogContract:
    """An append-only, idempotent, ordered, durable log of touchpoints."""

    def make_log(self, directory: Path) -> Any:
        raise NotImplementedError

    def reopen(self, log: Any, directory: Path) -> Any:
        log.close()
        return self.make_log(directory)

    def test_appended_touchpoints_get_increasing_positions(self, tmp_path: Path) -> None:
        log = self.make_log(tmp_path)
        first = [a.position for a in log.append(documents("a", "b"))]
        second = [a.position for a in log.append(documents("c"))]
        assert first[0] < first[1] < second[0]
        assert log.head() == second[0]

    def test_a_resent_event_id_is_stored_once_and_reported_as_duplicate(self, tmp_path: Path) -> None:
        log = self.make_log(tmp_path)
        first = log.append(documents("a"))
        assert not first[0].duplicate
        again = log.append(documents("a", "b"))
        assert again[0] == (first[0].position, True) and not again[1].duplicate
        assert [r.document()["event_id"] for r in log.read(0, 10)] == ["a", "b"]

    def test_a_duplicate_inside_one_batch_is_stored_once(self, tmp_path: Path) -> None:
        log = self.make_log(tmp_path)
        appended = log.append(documents("a") + documents("a"))
        assert appended[1] == (appended[0].position, True) and len(log.read(0, 10)) == 1

    def test_reading_after_a_position_returns_what_follows_in_order(self, tmp_path: Path) -> None:
        log = self.make_log(tmp_path)
        positions = [a.position for a in log.append(documents(*"abcdef"))]
        tail = log.read(positions[2], 2)
        assert [r.position for r in tail] == positions[3:5]
        assert tail[0].document() == documents(*"abcdef")[3]

    def test_what_was_appended_survives_closing_and_reopening(self, tmp_path: Path) -> None:
        log = self.make_log(tmp_path)
        log.append(documents("a", "b"))
        log = self.reopen(log, tmp_path)
        assert [r.document()["event_id"] for r in log.read(0, 10)] == ["a", "b"]
        assert log.append(documents("b"))[0].duplicate

    def test_records_can_be_fetched_by_position(self, tmp_path: Path) -> None:
        log = self.make_log(tmp_path)
        positions = [a.position for a in log.append(documents(*"abc"))]
        fetched = log.at_positions([positions[2], positions[0]])
        assert [r.document()["event_id"] for r in fetched] == ["c", "a"]

    def test_every_record_names_the_contract_that_wrote_it(self, tmp_path: Path) -> None:
        log = self.make_log(tmp_path)
        log.append(documents("a", "b"))
        assert {r.topic for r in log.read(0, 10)} == {"touchpoint/call@1", "touchpoint/purchase@1"}


__all__ = ["TouchpointLogContract", "documents", "pytest"]
