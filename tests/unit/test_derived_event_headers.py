"""Every event a worker derives carries CloudEvents ``ce_time``, as touchpoint records do:
the instant of the occurrence, in the one textual form instants have."""

from __future__ import annotations

from projections.view.state import micros
from services.scaleout.worker.fold import transition_headers, trigger_headers, view_event_headers
from services.scaleout.worker.segment_fold import segment_headers
from tests.support.touchpoints import T0

AT = micros(T0)
ISO = T0.isoformat(timespec="microseconds").encode()


def test_each_derived_event_says_when_it_happened() -> None:
    for headers in (view_event_headers("c-1", "t", 0, 7, AT), trigger_headers("tr-1", AT),
                    transition_headers("lc-1", AT), segment_headers("sg-1", AT)):
        named = dict(headers)
        assert named["ce_time"] == ISO and named["ce_specversion"] == b"1.0" and named["ce_id"]
        assert [k for k, _ in headers].count("ce_time") == 1


def test_an_occurrence_of_unknown_time_has_no_time_rather_than_a_made_up_one() -> None:
    assert "ce_time" not in dict(segment_headers("sg-1", None))
    assert "ce_time" not in dict(view_event_headers("c-1", "t", 0, 7, None))
