"""Group commit on a real SQLite log: every request is answered, whatever happens."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from services.embedded.eventlog import TouchpointLog
from services.embedded.ingest import GroupCommitter
from services.ports import StorageUnavailable
from tests.support.contracts import documents


def test_concurrent_requests_share_transactions_and_each_gets_its_own_positions(tmp_path: Path) -> None:
    writer = GroupCommitter(TouchpointLog(tmp_path / "log.sqlite"))

    async def send() -> list[list[int]]:
        answers = await asyncio.gather(*(writer.append(documents(f"e{n}")) for n in range(200)))
        return [[a.position for a in answer] for answer in answers]

    positions = asyncio.run(send())
    writer.close()
    assert sorted(p for answer in positions for p in answer) == list(range(1, 201))


def test_a_storage_failure_is_answered_to_every_request_and_the_writer_survives(tmp_path: Path) -> None:
    writer = GroupCommitter(TouchpointLog(tmp_path / "log.sqlite", max_bytes=64 * 1024))

    async def fill() -> None:
        for n in range(500):
            await writer.append(documents(*[f"e{n}-{i}" for i in range(50)]))

    with pytest.raises(StorageUnavailable, match="full"):
        asyncio.run(fill())
    assert writer.alive
    writer.close()


def test_an_unexpected_error_is_answered_too_and_the_next_request_succeeds(tmp_path: Path) -> None:
    writer = GroupCommitter(TouchpointLog(tmp_path / "log.sqlite"))
    unencodable = [{**documents("bad")[0], "attributes": {"x": {1, 2}}}]  # a set is not JSON

    async def scenario() -> int:
        with pytest.raises(StorageUnavailable, match="TypeError"):
            await writer.append(unencodable)
        return (await writer.append(documents("good")))[0].position

    assert asyncio.run(scenario()) == 1
    writer.close()


def test_closing_answers_everything_already_submitted(tmp_path: Path) -> None:
    writer = GroupCommitter(TouchpointLog(tmp_path / "log.sqlite"), max_events=10)

    async def scenario() -> list[object]:
        pending = [asyncio.ensure_future(writer.append(documents(f"c{n}"))) for n in range(100)]
        await asyncio.sleep(0)  # every request is queued
        await asyncio.to_thread(writer.close)
        return await asyncio.gather(*pending, return_exceptions=True)

    answers = asyncio.run(scenario())
    assert all(isinstance(a, list) and len(a) == 1 for a in answers)
    with pytest.raises(StorageUnavailable):
        asyncio.run(writer.append(documents("late")))
