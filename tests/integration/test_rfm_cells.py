"""The portfolio's RFM cells on a real view store equal a batch recomputation over the
final views, whatever the batch size, and give the same quintile cuts as the population
histograms built from the same figures."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from projections.value.rfm import NO_PURCHASE
from projections.value.rfm_cells import changes, quintiles, rfm_figures
from projections.value.rfm_population import RfmPopulation
from projections.view.document import from_state
from services.embedded.eventlog import TouchpointLog
from services.embedded.runner import ProjectionRunner
from services.embedded.storage.unit import ViewStore
from tools.traffic import TrafficOptions, generate


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> TouchpointLog:
    log = TouchpointLog(tmp_path_factory.mktemp("rfm") / "log.sqlite")
    log.append([{"received_at": e["occurred_at"], **e}
                for e in generate(TrafficOptions(customers=300, events=5000, seed=11))])
    return log


@pytest.mark.parametrize("batch", [37, 5000])
def test_cells_equal_a_recomputation_over_the_final_views(tmp_path: Path, log: TouchpointLog, batch: int) -> None:
    store = ViewStore(tmp_path / "views.sqlite")
    ProjectionRunner(log, store, batch=batch).catch_up()
    with store.datastore.transaction(commit=False) as c:
        c.execute("SELECT state FROM customer_views")
        views = [from_state(orjson.loads(row[0])) for row in c.fetchall()]
    figures = [rfm_figures(v, "EUR") for v in views]
    expected = changes((None, f) for f in figures)
    cells = store.value.rfm_cells()
    assert cells == expected and sum(c.customers for c in cells.values()) > 100

    population = RfmPopulation()
    for f in figures:
        population.move(NO_PURCHASE, f)
    assert quintiles(cells) == population.quintiles()
