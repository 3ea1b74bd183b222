"""The OpenAPI document generates a working client: ``openapi-python-client`` (pinned in
tools/codegen-requirements.txt, its own virtualenv made by ``make test``) generates a
Python package from a running server's ``/openapi.json``, with no warning about the
document, and that package posts a purchase and reads the customer's 360° view back as
a typed model."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.api import Api

pytestmark = [pytest.mark.e2e, pytest.mark.only_runtimes("embedded")]  # one document serves both runtimes

GENERATOR = Path(__file__).resolve().parents[2] / ".venv-codegen" / "bin" / "openapi-python-client"


def test_a_generated_python_client_posts_an_event_and_reads_the_view(start_runtime: Callable[..., Any],
                                                                       tmp_path: Path) -> None:
    if not GENERATOR.exists():
        pytest.fail("the client generator is missing: `make test` installs it into .venv-codegen")
    api = Api(start_runtime())
    (tmp_path / "openapi.json").write_bytes(api.client.get("/openapi.json").content)
    done = subprocess.run([str(GENERATOR), "generate", "--path", str(tmp_path / "openapi.json"), "--output-path",
                           str(tmp_path / "touchstream_client"), "--meta", "none"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    said = [line for line in (done.stdout + done.stderr).splitlines()
            if line.strip() and "ruff" not in line and not line.startswith(("Generating", "Skipping", "If you believe",
                                                                              "Warning(s) encountered"))]
    assert said == [], said  # nothing of the document was skipped or misread

    sys.path.insert(0, str(tmp_path))
    try:
        client_pkg = importlib.import_module("touchstream_client")
        models = importlib.import_module("touchstream_client.models")
        post = importlib.import_module("touchstream_client.api.ingest.post_events_v1_events_post")
        get = importlib.import_module("touchstream_client.api.customers.get_customer_v1_customers_customer_id_get")
        client = client_pkg.AuthenticatedClient(base_url=api.runtime.base_url, token=api.runtime.keys.admin)
        event = models.PurchaseIn(
            event_id="generated-client-1", occurred_at=datetime(2026, 11, 20, 15, 4, tzinfo=UTC), source="e-shop",
            customer=models.CustomerRefInType0(customer_id="cus-generated-1"), channel=models.Channel("web"),
            type_="purchase", order_id="o-1", amount="12.50", currency=models.PurchaseInCurrency("EUR"))
        answer = post.sync_detailed(client=client, body=event)
        assert answer.status_code == 202, answer.content
        position = answer.parsed.position
        view = get.sync_detailed(client=client, customer_id="cus-generated-1", min_position=position)
        assert view.status_code == 200, view.content
        assert isinstance(view.parsed, models.CustomerView) and view.parsed.customer_id == "cus-generated-1"
        assert view.parsed.touchpoints == 1
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == "touchstream_client" or m.startswith("touchstream_client.")]:
            del sys.modules[name]
