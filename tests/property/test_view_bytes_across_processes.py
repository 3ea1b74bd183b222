"""The same events give byte-identical views in any process (string hashing is seeded per
process, so anything that leaks set or dict iteration order into the bytes shows here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import hashlib, random
from functools import reduce
import orjson
from projections.touchpoints import CustomerRef
from projections.view.fold import evolve, initial_view
from projections.view.document import to_document, to_state
from tests.support import touchpoints as tp

digest = hashlib.sha256()
for seed in range(20):
    r = random.Random(seed)
    ref = CustomerRef(customer_id="c-1", emails=tuple(f"p{r.randrange(5)}@example.com" for _ in range(3)),
                      phones=tuple(f"+3361234{r.randrange(10000):04d}" for _ in range(2)))
    events = []
    for n in range(40):
        when = tp.at(r.randrange(90), r.randrange(24))
        kind = r.randrange(5)
        if kind == 0:
            events.append(tp.purchase(f"e{n}", when, f"{r.randrange(1, 900)}.50", ref=ref))
        elif kind == 1:
            events.append(tp.call(f"e{n}", when, r.choice(["inbound", "outbound"]), ref=ref,
                                  attributes=(("city", r.choice(["Lyon", "Nantes"])),)))
        elif kind == 2:
            events.append(tp.case(f"e{n}", f"k{r.randrange(3)}", r.choice(["opened", "resolved"]), when, ref=ref))
        elif kind == 3:
            events.append(tp.consent(f"e{n}", r.choice(["granted", "withdrawn"]), when, r.choice(["email", "sms"]), ref=ref))
        else:
            events.append(tp.survey(f"e{n}", when, csat=r.randrange(1, 6), ref=ref))
    r.shuffle(events)
    view = reduce(evolve, events, initial_view("c-1"))
    digest.update(orjson.dumps([to_state(view), to_document(view)], option=orjson.OPT_SORT_KEYS))
print(digest.hexdigest())
"""


def digest_with_hash_seed(seed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=ROOT, capture_output=True, text=True,
                          check=True, timeout=120)
    return done.stdout.strip()


def test_the_same_events_give_byte_identical_views_in_processes_with_different_hash_seeds() -> None:
    digests = {digest_with_hash_seed(seed) for seed in ("1", "2", "12345")}
    assert len(digests) == 1
    assert len(next(iter(digests))) == 64
