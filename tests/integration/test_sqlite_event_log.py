"""The embedded log (eventsourcing + SQLite) passes the log contract, plus SQLite specifics."""

from __future__ import annotations

from pathlib import Path

import pytest
from eventsourcing.persistence import PersistenceError

from services.embedded.eventlog import TouchpointLog
from tests.support.contracts import TouchpointLogContract, documents


class TestSQLiteTouchpointLog(TouchpointLogContract):
    def make_log(self, directory: Path) -> TouchpointLog:
        return TouchpointLog(directory / "log.sqlite")


def test_a_full_log_refuses_the_whole_batch_and_keeps_what_it_had(tmp_path: Path) -> None:
    log = TouchpointLog(tmp_path / "log.sqlite", max_bytes=64 * 1024)
    kept = log.append(documents("first"))
    with pytest.raises(PersistenceError, match="full"):
        for n in range(2000):
            log.append(documents(*[f"e{n}-{i}" for i in range(20)]))
    head = log.head()
    assert log.read(0, 1)[0].position == kept[0].position
    assert log.append(documents("first"))[0] == (kept[0].position, True)  # still there, a duplicate
    assert log.head() == head


def test_duplicates_report_where_the_original_was_stored(tmp_path: Path) -> None:
    from services.embedded.eventlog import stream_id

    log = TouchpointLog(tmp_path / "log.sqlite")
    appended = log.append(documents("a", "b"))
    assert log.touchpoints.positions_of([stream_id("b"), stream_id("zz")]) == {stream_id("b").hex: appended[1].position}
    assert log.append(documents("b", "c"))[0] == (appended[1].position, True)
