"""Progress bars for the long commands (``generate``, ``replay``, ``backtest``, ``segments
rebuild``, ``bench``): rich, on standard error, so a command's JSON report on standard
output stays clean for the program reading it.

A bar is drawn only when standard error is a terminal (a CI log or a pipe gets nothing)
and ``TOUCHSTREAM_PROGRESS`` is not ``0``. ``meter`` is advanced by the code doing the
work; ``polled`` reads a counter the work moves (a runner's position) from a thread, for
work that runs in one call.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

__all__ = ["Meter", "meter", "polled", "counted", "shown"]

T = TypeVar("T")


def shown() -> bool:
    """Whether bars are drawn: standard error is a terminal and TOUCHSTREAM_PROGRESS is not 0."""
    return os.environ.get("TOUCHSTREAM_PROGRESS", "1") != "0" and sys.stderr.isatty()


class Meter:
    """One task's bar: ``advance`` by what was done, or ``update`` to a count."""

    def __init__(self, bar: Progress, description: str, total: int | None):
        self._bar, self._task = bar, bar.add_task(description, total=total)

    def advance(self, done: int = 1) -> None:
        self._bar.update(self._task, advance=done)

    def update(self, completed: int, total: int | None = None) -> None:
        self._bar.update(self._task, completed=completed, total=total)

    def describe(self, description: str) -> None:
        self._bar.update(self._task, description=description)


def _bar(enabled: bool) -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=Console(stderr=True), disable=not (enabled and shown()))


@contextmanager
def meter(description: str, total: int | None = None, *, enabled: bool = True) -> Iterator[Meter]:
    """A bar for the block, advanced by the block (``total`` None: a count without an end)."""
    with _bar(enabled) as bar:
        yield Meter(bar, description, total)


@contextmanager
def polled(description: str, total: int | None, done: Callable[[], int], every: float = 0.2,
           *, enabled: bool = True) -> Iterator[Meter]:
    """A bar for the block fed by ``done()`` every ``every`` seconds from a thread: for work
    that runs in one call and moves a counter (a runner folding the log up to a position)."""
    stop = threading.Event()
    with _bar(enabled) as bar:
        shown_meter = Meter(bar, description, total)

        def follow() -> None:
            while not stop.wait(every):
                shown_meter.update(done())

        follower = threading.Thread(target=follow, name="progress", daemon=True)
        follower.start()
        try:
            yield shown_meter
        finally:
            stop.set()
            follower.join()
            shown_meter.update(done())


def counted(items: Iterable[T], shown_meter: Meter) -> Iterator[T]:
    """``items``, advancing ``shown_meter`` by one for each."""
    for item in items:
        yield item
        shown_meter.advance()
