"""The calibration/holdout table on the CDNOW history against ``lifetimes``' own
(``calibration_and_holdout_data`` and a ``BetaGeoFitter`` fitted on the calibration period)."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.resources import files

import numpy as np
import pandas as pd
import pytest
from lifetimes import BetaGeoFitter
from lifetimes.utils import calibration_and_holdout_data

from services.value.validation import holdout

CALIBRATION_END = datetime(1997, 9, 30, tzinfo=UTC)
OBSERVATION_END = datetime(1998, 6, 30, tzinfo=UTC)


def us(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000


def test_the_holdout_table_on_cdnow_is_lifetimes_table() -> None:
    frame = pd.read_csv(files("lifetimes.datasets") / "CDNOW_master.txt", sep=r"\s+", header=0,
                        names=["customer", "date", "cds", "amount"], dtype={"date": str})
    day = pd.to_datetime(frame["date"], format="%Y%m%d")
    at = ((day - pd.Timestamp(0)) // pd.Timedelta(microseconds=1)).to_numpy()
    ours = holdout(frame["customer"].to_numpy(), at, us(CALIBRATION_END), us(OBSERVATION_END))

    # with a monetary column: lifetimes' holdout grouping finds no column to aggregate under pandas 3 without one
    theirs = calibration_and_holdout_data(pd.DataFrame({"customer": frame["customer"], "day": day,
                                                        "amount": frame["amount"]}), "customer", "day",
                                          calibration_period_end="1997-09-30", observation_period_end="1998-06-30",
                                          freq="D", freq_multiplier=7, monetary_value_col="amount")
    model = BetaGeoFitter().fit(theirs["frequency_cal"], theirs["recency_cal"], theirs["T_cal"])
    theirs["predicted"] = model.conditional_expected_number_of_purchases_up_to_time(
        theirs["duration_holdout"], theirs["frequency_cal"], theirs["recency_cal"], theirs["T_cal"])
    theirs["group"] = np.minimum(theirs["frequency_cal"], 7).astype(int)
    table = theirs.groupby("group").agg(customers=("predicted", "size"), actual=("frequency_holdout", "mean"),
                                        predicted=("predicted", "mean"))

    assert ours.holdout_weeks == theirs["duration_holdout"].iloc[0] and ours.model.customers == len(theirs) == 23_570
    assert [r["customers"] for r in ours.rows] == table["customers"].tolist()
    assert [r["actual"] for r in ours.rows] == pytest.approx(table["actual"].to_numpy(), abs=1e-4)
    assert [r["predicted"] for r in ours.rows] == pytest.approx(table["predicted"].to_numpy(), rel=1e-3)
    assert ours.actual == theirs["frequency_holdout"].sum()
    assert ours.predicted == pytest.approx(theirs["predicted"].sum(), rel=1e-4)
    assert [r["frequency"] for r in ours.rows][-1] == "7+"
