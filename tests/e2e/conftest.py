"""End-to-end fixtures: every scenario runs against each registered runtime, over HTTP.

``runtime`` is a started runtime with default settings (function-scoped: the embedded
server starts in about a second, and every test gets its own durable state).
``start_runtime(settings)`` starts another one of the same kind, with ``TOUCHSTREAM_*``
overrides, for scenarios that need special limits or a second, fresh instance.

Runtimes come from ``tests.support.runtimes.RUNTIMES``; a module that registers another
runtime (the scale-out one) is added to ``RUNTIME_MODULES``. ``TOUCHSTREAM_E2E_RUNTIMES``
(comma-separated names) selects a subset.
"""

from __future__ import annotations

import importlib
import itertools
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.support.api import Api
from tests.support.runtimes import RUNTIMES, Runtime

RUNTIME_MODULES: tuple[str, ...] = ("tests.support.runtimes", "tests.support.kafka_runtime")

for _module in RUNTIME_MODULES:
    importlib.import_module(_module)


def _selected_runtimes() -> list[str]:
    wanted = os.environ.get("TOUCHSTREAM_E2E_RUNTIMES", "").strip()
    if not wanted:
        return sorted(RUNTIMES)
    names = [n.strip() for n in wanted.split(",") if n.strip()]
    unknown = [n for n in names if n not in RUNTIMES]
    if unknown:
        raise pytest.UsageError(f"TOUCHSTREAM_E2E_RUNTIMES names unknown runtimes {unknown}; known: {sorted(RUNTIMES)}")
    return names


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "runtime_name" in metafunc.fixturenames:
        names = _selected_runtimes()
        only = metafunc.definition.get_closest_marker("only_runtimes")
        if only is not None:  # a scenario about one runtime's own setting
            names = [n for n in names if n in only.args]
        metafunc.parametrize("runtime_name", names)


StartRuntime = Callable[..., Runtime]


@pytest.fixture
def start_runtime(runtime_name: str, tmp_path: Path) -> Iterator[StartRuntime]:
    counter = itertools.count(1)
    with ExitStack() as stack:

        def start(settings: Mapping[str, str] | None = None) -> Runtime:
            data_dir = tmp_path / f"{runtime_name}-{next(counter)}"
            return stack.enter_context(RUNTIMES[runtime_name](data_dir, dict(settings or {})))

        yield start


@pytest.fixture
def runtime(start_runtime: StartRuntime) -> Runtime:
    return start_runtime()


@pytest.fixture
def api(runtime: Runtime) -> Api:
    return Api(runtime)
