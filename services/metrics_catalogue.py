"""The metrics catalogue: every metric of ``services.metrics`` as data, and docs/METRICS.md
rendered from it (``touchstream metrics-doc``), so the document cannot drift from the code.

``names(metric)`` gives the sample names Prometheus stores for a metric (a counter's
``_total``; a histogram's ``_bucket``, ``_sum`` and ``_count``): what a PromQL expression
in a dashboard or an alert rule may name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase

from services import metrics

__all__ = ["MetricSpec", "catalogue", "sample_names", "render_markdown", "METRICS_DOC", "PROCESS_METRICS"]

METRICS_DOC = Path(__file__).resolve().parents[1] / "docs" / "METRICS.md"

# prometheus_client's default collectors, registered on import in every process we run:
# process resources (Linux /proc), interpreter and garbage collector figures.
PROCESS_METRICS = {
    "process_cpu_seconds_total": "counter",
    "process_resident_memory_bytes": "gauge",
    "process_virtual_memory_bytes": "gauge",
    "process_open_fds": "gauge",
    "process_max_fds": "gauge",
    "process_start_time_seconds": "gauge",
    "python_gc_collections_total": "counter",
    "python_gc_objects_collected_total": "counter",
    "python_gc_objects_uncollectable_total": "counter",
    "python_info": "gauge",
}
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str  # the exported family name (a counter's with ``_total``)
    kind: str  # counter, gauge, histogram
    labels: tuple[str, ...]
    help: str
    buckets: tuple[float, ...]  # histograms' upper bounds, +Inf left out

    @property
    def unit(self) -> str:
        return next((u for u in ("seconds", "bytes") if self.name.endswith((f"_{u}", f"_{u}_total"))), "")


def _spec(metric: MetricWrapperBase) -> MetricSpec:
    kind: str = metric._type  # type: ignore[assignment]  # noqa: SLF001 - set by every metric class
    base = metric._name  # noqa: SLF001
    buckets = tuple(b for b in getattr(metric, "_upper_bounds", ()) if b != float("inf"))
    return MetricSpec(f"{base}_total" if kind == "counter" else base, kind, tuple(metric._labelnames),  # noqa: SLF001
                      metric._documentation, buckets)  # noqa: SLF001


def catalogue() -> list[MetricSpec]:
    """Every metric declared in ``services.metrics``, in declaration order."""
    declared = [getattr(metrics, name) for name in metrics.__all__]
    return [_spec(m) for m in declared if isinstance(m, MetricWrapperBase)]


def sample_names(spec: MetricSpec) -> set[str]:
    """The series names Prometheus stores for this metric."""
    base = spec.name.removesuffix("_total") if spec.kind == "counter" else spec.name
    return {base + suffix for suffix in _SUFFIXES[spec.kind]}


def render_markdown() -> str:
    lines = [
        "# Metrics",
        "",
        "Generated from `services/metrics.py` by `touchstream metrics-doc --out docs/METRICS.md`;",
        "do not edit by hand (`tests/unit/test_ops_metrics_catalogue.py` fails when this file is stale).",
        "",
        "Every process serves them on `/metrics`: the API (`touchstream run`, on `TOUCHSTREAM_PORT`) and",
        "each view worker (`touchstream worker`, on `TOUCHSTREAM_WORKER_WEB_PORT`). A process exports only",
        "what its role emits. Labels carry types, results, reasons, routes, stages and partitions, never",
        "customer data.",
        "",
        "| metric | type | unit | labels | meaning |",
        "|---|---|---|---|---|",
    ]
    for spec in catalogue():
        labels = ", ".join(f"`{label}`" for label in spec.labels) or "—"
        lines.append(f"| `{spec.name}` | {spec.kind} | {spec.unit or '—'} | {labels} | {spec.help} |")
    lines += ["", "## Histogram buckets", ""]
    for spec in catalogue():
        if spec.kind == "histogram":
            bounds = ", ".join(f"{b:g}" for b in spec.buckets)
            lines.append(f"- `{spec.name}`: {bounds}, +Inf")
    lines += [
        "",
        "## Process and runtime (prometheus_client's default collectors)",
        "",
        "| metric | type |",
        "|---|---|",
        *(f"| `{name}` | {kind} |" for name, kind in PROCESS_METRICS.items()),
        "",
    ]
    return "\n".join(lines)
