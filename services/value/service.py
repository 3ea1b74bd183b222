"""The refit job in the API process: on demand (``POST /v1/value/refit``) and every
``value_refit_seconds``; the current model for reads, cached a few seconds.

The model is fitted in a worker thread (numpy/scipy release the GIL for most of it) on
the purchase histories the platform reads from its view store, then stored there, so
every API process of the scale-out runtime reads the same model.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import structlog

from projections.value.rfm_cells import Cell, Change, quintiles
from projections.value.rfm_population import Quintiles
from projections.view.state import micros
from services import metrics
from services.clock import Periodic
from services.ports import ValueStore
from services.value.job import NotEnoughHistory, ValueModel, refit

__all__ = ["ValueService", "MODEL_NAME"]

MODEL_NAME = "bgnbd"
CACHE_SECONDS = 5.0

log = structlog.get_logger("touchstream.value")


class ValueService:
    def __init__(self, platform: ValueStore, every_seconds: float):
        self.platform = platform
        self._cached: tuple[float, ValueModel | None] | None = None
        self._cells: tuple[float, dict[Cell, Change], Quintiles | None] | None = None
        self._rounds = Periodic("value-refit", every_seconds, self._scheduled)
        self._lock = asyncio.Lock()

    async def refit(self) -> ValueModel:
        """Fit on every purchase history now and store the model; ``NotEnoughHistory``
        when too few customers bought twice."""
        async with self._lock:
            histories = await self.platform.purchase_histories()
            end = micros(datetime.now(UTC))
            try:
                model = await asyncio.to_thread(refit, histories, end)
            except NotEnoughHistory:
                metrics.child(metrics.VALUE_REFITS, "not_enough_history").inc()
                raise
            await self.platform.save_model(MODEL_NAME, model.to_json())
            self._cached = (time.monotonic(), model)
            metrics.child(metrics.VALUE_REFITS, "fitted").inc()
            metrics.VALUE_MODEL_CUSTOMERS.set(model.customers)
            log.info("value_model_fitted", customers=model.customers, repeat_buyers=model.repeat_buyers,
                     seconds=model.seconds, converged=model.model.converged)
            return model

    async def current(self) -> ValueModel | None:
        cached = self._cached
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        raw = await self.platform.model(MODEL_NAME)
        model = None if raw is None else ValueModel.from_json(raw)
        self._cached = (time.monotonic(), model)
        return model

    async def portfolio(self) -> tuple[dict[Cell, Change], Quintiles | None]:
        """The portfolio's RFM cells and their quintile cuts, read at most every few seconds."""
        cached = self._cells
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1], cached[2]
        cells = await self.platform.rfm_cells()
        cuts = quintiles(cells)
        self._cells = (time.monotonic(), cells, cuts)
        return cells, cuts

    def start(self) -> None:
        self._rounds.start()

    async def stop(self) -> None:
        await self._rounds.stop()

    async def _scheduled(self) -> None:
        try:
            await self.refit()
        except NotEnoughHistory as error:
            log.info("value_model_not_fitted", reason=str(error))
        except Exception as error:  # noqa: BLE001 - storage trouble: the next round tries again
            metrics.child(metrics.VALUE_REFITS, "failed").inc()
            log.warning("value_refit_failed", error=type(error).__name__)
