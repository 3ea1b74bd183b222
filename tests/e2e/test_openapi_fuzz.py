"""The OpenAPI document drives a property-based fuzzer (schemathesis) against a real
server of each runtime, bounded and seeded so the run is the same every time: every
check it has (server errors, status codes and response bodies the document states,
schema-valid requests accepted, schema-violating ones refused, ...) finds nothing.

The document is what the server enforces: patterns for phones, emails, money and
cursors, bounds for every number (tests/unit/test_input_rules.py samples each pattern
against the server's own rules). Two things no JSON Schema can state are handled here
and said in the document's descriptions:

* ``margin`` never exceeds ``amount`` (a rule between two fields): the hook in
  ``schemathesis_hooks.py`` keeps generated margins within their amounts;
* ``GET /v1/triggers/stream`` never ends (server-sent events): it is left out, and
  tests/integration/test_trigger_routes.py reads it as a browser does.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import TEST_KEYS

pytestmark = pytest.mark.e2e

FUZZ_KEY = "ts-e2e-fuzz-every-scope-01"
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
SEED, EXAMPLES = 20261207, 25


def test_a_seeded_fuzz_driven_by_the_openapi_document_finds_nothing(start_runtime: Any, tmp_path: Path) -> None:
    keys = {**TEST_KEYS.scopes(), FUZZ_KEY: ["admin", "ingest", "read"]}
    runtime = start_runtime({"TOUCHSTREAM_API_KEYS": json.dumps(keys)})
    report = tmp_path / "report.json"
    command = [str(SCHEMATHESIS), "run", f"{runtime.base_url}/openapi.json",
               "-H", f"Authorization: Bearer {FUZZ_KEY}", "--checks", "all",
               "--phases", "examples,fuzzing,stateful", "--max-examples", str(EXAMPLES), "--seed", str(SEED),
               "--generation-database", "none", "--workers", "1", "--no-color", "--request-timeout", "20",
               "--exclude-path", "/v1/triggers/stream", "--report", "ndjson", "--report-ndjson-path", str(report)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path,
                          env={"SCHEMATHESIS_HOOKS": HOOKS.stem, "PYTHONPATH": str(HOOKS.parent),
                               "PATH": str(SCHEMATHESIS.parent),
                               "PYTHONHASHSEED": "0"})  # with --seed: the same cases on every machine
    summary = done.stdout[-3000:]
    failures = done.stdout[max(done.stdout.find("FAILURES"), 0):][:12000]
    assert done.returncode == 0, failures + summary + done.stderr[-3000:]
    generated = re.search(r"(\d+) generated", summary)
    assert generated and int(generated.group(1)) >= 500, summary  # it ran: every operation, many cases
