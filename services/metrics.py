"""Every Prometheus metric Touchstream exports, declared once (prefix ``touchstream_``,
base units). Labels never carry customer data: only types, reasons, routes, channels.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

__all__ = [
    "EVENTS",
    "INGEST_SECONDS",
    "GROUP_COMMIT_EVENTS",
    "PROJECTED_EVENTS",
    "PROJECTION_POSITION",
    "LOG_POSITION",
    "PROJECTION_LAG_EVENTS",
    "PROJECTION_LAG_SECONDS",
    "PROJECTION_BATCH_SECONDS",
    "DEAD_LETTERS",
    "IDENTITY_CONFLICTS",
    "POLICY_MERGES",
    "HTTP_REQUESTS",
    "HTTP_SECONDS",
    "READ_WAIT_SECONDS",
    "WORKER_RECORDS",
    "WORKER_PARTITION_POSITION",
    "WORKER_PARTITION_LAG",
    "WORKER_PARTITION_LAG_SECONDS",
    "WORKER_COMMITS_FENCED",
    "WORKER_STALLS",
    "VIEW_LATENCY_SECONDS",
    "DERIVED_EVENTS",
    "VIEWS_WRITTEN",
    "VALUE_REFITS",
    "VALUE_MODEL_CUSTOMERS",
    "VALUE_OTHER_CURRENCY_PURCHASES",
    "LIFECYCLE_CUSTOMERS",
    "LIFECYCLE_TRANSITIONS",
    "LIFECYCLE_TICK_DUE",
    "TICK_FAILURES",
    "TRIGGERS_FIRED",
    "TRIGGERS_SUPPRESSED",
    "TRIGGER_OUTCOMES",
    "TRIGGERS_DELIVERED",
    "WEBHOOK_DELIVERIES",
    "WEBHOOK_ATTEMPTS",
    "WEBHOOK_DELIVERY_SECONDS",
    "WEBHOOK_LAG_SECONDS",
    "SEGMENT_CUSTOMERS",
    "child",
]


@lru_cache(maxsize=4096)
def child(metric: Any, *labels: str) -> Any:
    """A labelled child, looked up once: ``labels()`` locks and builds a key on every call,
    and ingest counts every event. Label values are bounded sets (types, results,
    reasons, route templates), so the cache stays small."""
    return metric.labels(*labels)

# A ``*_created`` series per counter and histogram doubles what Prometheus stores and no
# query of ours reads it.
disable_created_metrics()

_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Ingest to view also spans catch-up after a restart or an outage: minutes, not milliseconds.
_VIEW_LATENCY = (*_LATENCY, 10.0, 30.0, 60.0, 300.0)

EVENTS = Counter(
    "touchstream_events_total",
    "Touchpoints submitted, by type and result (accepted, duplicate, rejected) and reason.",
    ["type", "result", "reason"],
)
INGEST_SECONDS = Histogram(
    "touchstream_ingest_seconds", "Time from request to durable append, per request.", buckets=_LATENCY
)
GROUP_COMMIT_EVENTS = Histogram(
    "touchstream_group_commit_events",
    "Touchpoints written per log transaction (group commit size).",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
)
PROJECTED_EVENTS = Counter("touchstream_projected_events_total", "Log records folded into views.")
PROJECTION_POSITION = Gauge("touchstream_projection_position", "Last log position included in the views.")
LOG_POSITION = Gauge("touchstream_log_position", "Last position written to the log.")
PROJECTION_LAG_EVENTS = Gauge(
    "touchstream_projection_lag_events", "Log records not yet in the views (log - projection position)."
)
PROJECTION_LAG_SECONDS = Gauge(
    "touchstream_projection_lag_seconds",
    "Age of the oldest log record not yet in the views (0 when caught up).",
)
PROJECTION_BATCH_SECONDS = Histogram(
    "touchstream_projection_batch_seconds", "Time to fold and commit one projection batch.", buckets=_LATENCY
)
DEAD_LETTERS = Counter(
    "touchstream_dead_letters_total",
    "Touchpoint records the projection (embedded runner or view worker) could not apply, by reason.",
    ["reason"],
)
IDENTITY_CONFLICTS = Counter(
    "touchstream_identity_conflicts_total",
    "Touchpoints carrying identifiers of two different customers (recorded; merged only by an operator or "
    "the merge policy).",
)
POLICY_MERGES = Counter(
    "touchstream_policy_merges_total",
    "Merges the automatic merge policy decided and appended to the log (docs/IDENTITY.md).",
)
HTTP_REQUESTS = Counter(
    "touchstream_http_requests_total", "HTTP requests by route, method and status.", ["route", "method", "status"]
)
HTTP_SECONDS = Histogram(
    "touchstream_http_request_duration_seconds", "HTTP request duration by route.", ["route", "method"],
    buckets=_LATENCY,
)
READ_WAIT_SECONDS = Histogram(
    "touchstream_read_wait_seconds", "Time reads waited for the views to reach a position.", buckets=_LATENCY
)

# -- scale-out view worker ---------------------------------------------------------------
WORKER_RECORDS = Counter(
    "touchstream_worker_records_total",
    "Touchpoint records a view worker handled, by result (folded, duplicate, dead_letter).",
    ["result"],
)
WORKER_PARTITION_POSITION = Gauge(
    "touchstream_worker_partition_position", "Last offset folded into Redis, per owned partition.", ["partition"]
)
WORKER_PARTITION_LAG = Gauge(
    "touchstream_worker_partition_lag_records",
    "Records on the partition not yet folded (high watermark - 1 - position), per owned partition.",
    ["partition"],
)
WORKER_PARTITION_LAG_SECONDS = Gauge(
    "touchstream_worker_partition_lag_seconds",
    "How far the views trail the partition in time: age (since received_at) of the last record folded "
    "while records wait behind it, 0 when caught up; per owned partition.",
    ["partition"],
)
WORKER_COMMITS_FENCED = Counter(
    "touchstream_worker_commits_fenced_total",
    "Batch commits refused because the partition's stored position had moved on (another owner).",
)
WORKER_STALLS = Counter(
    "touchstream_worker_stalls_total",
    "Batches abandoned because Kafka or Redis failed; the worker resumed from the stored positions.",
    ["cause"],
)
VIEW_LATENCY_SECONDS = Histogram(
    "touchstream_view_latency_seconds",
    "From ingest (received_at) to the view committed: per folded touchpoint in a view worker (Redis), "
    "per batch's oldest touchpoint in the embedded runtime (SQLite).",
    buckets=_VIEW_LATENCY,
)
DERIVED_EVENTS = Counter(
    "touchstream_derived_events_total", "Events the worker published, by topic.", ["topic"]
)

VIEWS_WRITTEN = Counter(
    "touchstream_views_written_total",
    "Customer views written to the view store (a view changed by several events of one batch counts once).",
)

# -- lifecycle stages ----------------------------------------------------------------------
LIFECYCLE_CUSTOMERS = Gauge(
    "touchstream_lifecycle_customers", "Customers per lifecycle stage (refreshed when scraped).", ["stage"]
)
LIFECYCLE_TRANSITIONS = Counter(
    "touchstream_lifecycle_transitions_total",
    "Lifecycle stage transitions committed, by previous and new stage.",
    ["from_stage", "to_stage"],
)
LIFECYCLE_TICK_DUE = Counter(
    "touchstream_lifecycle_tick_customers_total",
    "Customers a clock tick re-evaluated (those whose next deadline had passed).",
)
TICK_FAILURES = Counter(
    "touchstream_tick_failures_total",
    "Customers a clock tick could not move on (their stored state did not load); they stay due.",
)

# -- customer value ------------------------------------------------------------------------
VALUE_REFITS = Counter(
    "touchstream_value_refits_total",
    "Purchase-model (BG/NBD) refits, by result (fitted, not_enough_history, no_platform_time, failed).",
    ["result"],
)
VALUE_MODEL_CUSTOMERS = Gauge(
    "touchstream_value_model_customers", "Customers with a purchase the current purchase model was fitted on."
)
VALUE_OTHER_CURRENCY_PURCHASES = Gauge(
    "touchstream_value_other_currency_purchases",
    "Purchases in a currency other than value_currency, by currency: the spend figures leave them out "
    "(counted when /v1/analytics/value is read and at each refit).",
    ["currency"],
)

# -- next best contact -----------------------------------------------------------------------
TRIGGERS_FIRED = Counter(
    "touchstream_triggers_fired_total",
    "Next-best-contact triggers committed, by rule and channel.",
    ["rule", "channel"],
)
TRIGGERS_SUPPRESSED = Counter(
    "touchstream_triggers_suppressed_total",
    "Next-best-contact candidates that did not become triggers, by rule and reason "
    "(not_eligible, suppression, no_consent, consent_withdrawn, expired, quiet_hours, cooldown, caps, arbitration).",
    ["rule", "reason"],
)
TRIGGER_OUTCOMES = Counter(
    "touchstream_trigger_outcomes_total",
    "What became of triggers (reached, not_reached, declined, converted), by rule and channel.",
    ["rule", "channel", "outcome"],
)
TRIGGERS_DELIVERED = Counter(
    "touchstream_triggers_delivered_total",
    "Triggers a channel system acknowledged (webhook answered 2xx), by rule and channel.",
    ["rule", "channel"],
)

# -- next-best-contact delivery: webhooks per channel -----------------------------------------
WEBHOOK_DELIVERIES = Counter(
    "touchstream_webhook_deliveries_total",
    "Triggers a channel's webhook is done with, by outcome (delivered, failed_permanent: refused with a 4xx, "
    "dead_lettered: retries exhausted, expired: valid_until passed before delivery).",
    ["channel", "outcome"],
)
WEBHOOK_ATTEMPTS = Counter(
    "touchstream_webhook_attempts_total",
    "Webhook POSTs, by result (ok, client_error, server_error, throttled, timeout, connection_error).",
    ["channel", "result"],
)
WEBHOOK_DELIVERY_SECONDS = Histogram(
    "touchstream_webhook_delivery_seconds",
    "From a trigger's first webhook attempt to the receiver's 2xx, retries and backoff included.",
    ["channel"],
    buckets=_VIEW_LATENCY,
)
WEBHOOK_LAG_SECONDS = Gauge(
    "touchstream_webhook_lag_seconds",
    "Age (since its at) of the trigger a channel's webhook is delivering, 0 when the feed is drained.",
    ["channel"],
)

# -- customer segments ---------------------------------------------------------------------
SEGMENT_CUSTOMERS = Gauge(
    "touchstream_segment_customers", "Members of each customer segment (refreshed when scraped).", ["segment"]
)
