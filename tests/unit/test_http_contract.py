"""The HTTP contract's fast canonical form equals the codec's own round trip."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from projections.codec import from_dict, to_dict
from services.api.contracts import TOUCHPOINT_ADAPTER, normalise_email, normalise_phone, to_canonical

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "touchpoint"
EXAMPLES = [e for f in sorted(SCHEMAS.glob("*/v1.examples.json")) for e in json.loads(f.read_text())]
RECEIVED = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize("example", EXAMPLES, ids=[e["event_id"] for e in EXAMPLES])
def test_the_fast_canonical_form_equals_the_codec_round_trip(example: dict) -> None:  # type: ignore[type-arg]
    sent = {k: v for k, v in example.items() if k != "received_at"}
    sent["occurred_at"] = "2026-03-02T10:15:00.5+01:00"
    if sent["type"] == "purchase":
        sent["amount"] = "49.9"
    canonical = to_canonical(TOUCHPOINT_ADAPTER.validate_python(sent), RECEIVED)
    assert json.dumps(canonical) == json.dumps(to_dict(from_dict(canonical)))
    assert canonical["occurred_at"] == "2026-03-02T09:15:00.500000+00:00"
    assert canonical["received_at"] == "2026-11-24T08:00:00.000000+00:00"
    if sent["type"] == "purchase":
        assert canonical["amount"] == "49.9000"


def test_emails_are_lower_cased_and_checked() -> None:
    assert normalise_email("  Ana.Martin@Example.COM ") == "ana.martin@example.com"
    assert normalise_email("José@Exämple.FR") == "josé@exämple.fr"  # internationalised: email-validator's path
    for bad in ("ana", "ana@", "@example.com", "ana@@example.com", "ana@example"):
        with pytest.raises(ValueError):
            normalise_email(bad)


def test_phones_are_normalised_to_e164_with_the_default_region() -> None:
    assert normalise_phone("06 12 34 56 78") == "+33612345678"
    assert normalise_phone("+44 20 7946 0958") == "+442079460958"
    with pytest.raises(ValueError):
        normalise_phone("12")
