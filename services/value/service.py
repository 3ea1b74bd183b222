"""The refit job in the API process: on demand (``POST /v1/value/refit``) and every
``value_refit_seconds``; the current model for reads, cached a few seconds.

The observation ends at the platform's time (the latest clock tick the views have
folded) unless the caller names an instant; with neither, nothing is fitted
(``NoPlatformTime``): the wall clock would give an imported history a model of a period
it does not cover. ``time_base`` is the instant a value card is computed at when the
reader names none: the platform's time too, the wall clock only before the first tick.

The model is fitted in a worker thread (numpy/scipy release the GIL for most of it) on
the purchase histories the platform reads from its view store, then stored there, so
every API process of the scale-out runtime reads the same model.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import NamedTuple

import structlog

from projections.value.rfm_cells import Cell, Change, quintiles
from projections.value.rfm_population import Quintiles
from projections.view.state import micros
from services import metrics
from services.clock import Periodic
from services.ports import ValueStore
from services.value.job import ClvTerms, NotEnoughHistory, ValueModel, refit

__all__ = ["ValueService", "MODEL_NAME", "NoPlatformTime", "TimeBase"]

MODEL_NAME = "bgnbd"
CACHE_SECONDS = 5.0
CURRENCIES_CACHE_SECONDS = 60.0  # a scan of every view: not at every read

log = structlog.get_logger("touchstream.value")


class NoPlatformTime(LookupError):
    """No clock tick folded yet and no observation end given."""


class TimeBase(NamedTuple):
    at: int  # µs
    source: str  # "request", "platform_clock" or "wall_clock"


class ValueService:
    def __init__(self, platform: ValueStore, every_seconds: float):
        self.platform = platform
        self._cached: tuple[float, ValueModel | None] | None = None
        self._cells: tuple[float, dict[Cell, Change], Quintiles | None] | None = None
        self._currencies: tuple[float, dict[str, tuple[int, int, Decimal]]] | None = None
        self._rounds = Periodic("value-refit", every_seconds, self._scheduled)
        self._lock = asyncio.Lock()

    async def refit(self, observation_end: int | None = None) -> ValueModel:
        """Fit on every purchase history observed until ``observation_end`` (µs; default:
        the platform's time) and store the model; ``NotEnoughHistory`` when too few
        customers bought twice, ``NoPlatformTime`` when there is no end to observe to."""
        async with self._lock:
            source = "explicit"
            if observation_end is None:
                observation_end, source = await self.platform.platform_time(), "platform_clock"
            if observation_end is None:
                metrics.child(metrics.VALUE_REFITS, "no_platform_time").inc()
                raise NoPlatformTime("no clock tick has been folded yet: tick the clock or name the observation end")
            settings = self.platform.settings
            histories = await self.platform.purchase_histories(settings.value_currency)
            terms = ClvTerms(settings.value_clv_months, settings.value_clv_monthly_discount_rate,
                             settings.value_margin_ratio)
            try:
                model = await asyncio.to_thread(refit, histories, observation_end, source,
                                                micros(datetime.now(UTC)), terms)
            except NotEnoughHistory:
                metrics.child(metrics.VALUE_REFITS, "not_enough_history").inc()
                raise
            await self.platform.save_model(MODEL_NAME, model.to_json())
            await self.currencies(fresh=True)
            self._cached = (time.monotonic(), model)
            metrics.child(metrics.VALUE_REFITS, "fitted").inc()
            metrics.VALUE_MODEL_CUSTOMERS.set(model.customers)
            log.info("value_model_fitted", customers=model.customers, repeat_buyers=model.repeat_buyers,
                     observation_end=model.observation_end, end_source=source, seconds=model.seconds,
                     converged=model.model.converged)
            return model

    async def current(self) -> ValueModel | None:
        cached = self._cached
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        raw = await self.platform.model(MODEL_NAME)
        model = None if raw is None else ValueModel.from_json(raw)
        self._cached = (time.monotonic(), model)
        return model

    async def time_base(self, at: int | None) -> TimeBase:
        """The instant a value card is computed at: the reader's, else the platform's."""
        if at is not None:
            return TimeBase(at, "request")
        clock = await self.platform.platform_time()
        if clock is not None:
            return TimeBase(clock, "platform_clock")
        return TimeBase(micros(datetime.now(UTC)), "wall_clock")

    async def currencies(self, fresh: bool = False) -> dict[str, tuple[int, int, Decimal]]:
        """Per currency: (customers, purchases, spend), read at most every minute; sets the
        gauge of purchases the value figures leave out (another currency than ``value_currency``)."""
        cached = self._currencies
        if not fresh and cached is not None and time.monotonic() - cached[0] < CURRENCIES_CACHE_SECONDS:
            return cached[1]
        found = await self.platform.purchases_by_currency()
        self._currencies = (time.monotonic(), found)
        for currency, (_, purchases, _) in found.items():
            if currency != self.platform.settings.value_currency:
                metrics.child(metrics.VALUE_OTHER_CURRENCY_PURCHASES, currency).set(purchases)
        return found

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
        except (NotEnoughHistory, NoPlatformTime) as error:
            log.info("value_model_not_fitted", reason=str(error))
        except Exception as error:  # noqa: BLE001 - storage trouble: the next round tries again
            metrics.child(metrics.VALUE_REFITS, "failed").inc()
            log.warning("value_refit_failed", error=type(error).__name__)
