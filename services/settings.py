"""Settings: read once from the environment (prefix ``TOUCHSTREAM_``) into a frozen object.

Nothing else in Touchstream reads the environment. Secrets (API keys, per-form public
keys) arrive here and nowhere else. ``Settings()`` raises a pydantic ``ValidationError``
naming the variable when a value is malformed.

API keys: ``TOUCHSTREAM_API_KEYS='{"<key>": ["ingest", "read", "admin"]}'``.
Forms: ``TOUCHSTREAM_FORMS='{"contact": {"public_key": "...", "origins": ["https://a.example"],
"thank_you_url": "https://a.example/thanks"}}'``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from projections.lifecycle.alive import AliveRule
from projections.lifecycle.stages import LifecycleConfig
from projections.merge_policy import Kind, Setting
from projections.predicates.facts import CONTACT_CHANNELS

if TYPE_CHECKING:
    from projections.batch import FoldConfig
    from projections.nbc.engine import ContactEngine

__all__ = ["Scope", "FormSettings", "Settings"]

Scope = Literal["ingest", "read", "admin"]


class FormSettings(BaseModel):
    """A public web form: who may post it, from where, and where the browser goes next."""

    model_config = ConfigDict(frozen=True)

    public_key: str = Field(min_length=8)
    origins: tuple[str, ...] = ()
    thank_you_url: str | None = None
    source: str = "web-form"
    email_field: str = "email"
    phone_field: str = "phone"
    honeypot_field: str = "_hp"


DEFAULT_RULES_FILE = Path(__file__).resolve().parents[1] / "rules" / "default.yaml"
SEGMENTS_FILE = Path(__file__).resolve().parents[1] / "rules" / "segments.yaml"
"""The default segments shipped with Touchstream."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOUCHSTREAM_", frozen=True, extra="ignore")

    data_dir: Path = Path("data")
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "info"
    log_format: Literal["json", "console"] = "json"

    api_keys: dict[str, tuple[Scope, ...]] = {}
    forms: dict[str, FormSettings] = {}
    rate_limit_per_second: float = Field(default=2000.0, gt=0)
    rate_limit_burst: int = Field(default=4000, ge=1)

    default_phone_region: str = "FR"
    max_batch_events: int = 1000
    max_body_bytes: int = 1024 * 1024
    max_event_bytes: int = 32 * 1024
    max_future_seconds: int = Field(default=900, ge=0)  # how far ahead of our clock occurred_at may be

    sqlite_lock_timeout_seconds: int = 2
    log_max_bytes: int = 0  # quota on the log database; 0 = unlimited
    projection_batch_events: int = 2000
    read_wait_max_seconds: float = 2.0
    group_commit_max_events: int = 5000
    # which runtime `touchstream run` serves: one process on SQLite, or Kafka + Redis
    runtime: Literal["embedded", "kafka"] = "embedded"
    # scale-out runtime: Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_partitions: int = Field(default=8, ge=1)
    kafka_replication_factor: int = Field(default=1, ge=1)
    kafka_request_timeout_ms: int = Field(default=5000, ge=100)
    # How long a fetch waits for records when there are none. Brokers that hold an empty
    # fetch for the whole wait (Tansu) make this the floor of ingest-to-view latency.
    kafka_fetch_max_wait_ms: int = Field(default=100, ge=1)
    # the touchpoints topic: another name is a generation of it with another partition
    # count (`touchstream repartition`, docs/SCALE_OUT.md)
    kafka_touchpoints_topic: str = Field(default="touchstream.touchpoints.v1", pattern=r"^[A-Za-z0-9._-]{1,200}$")
    # the view worker's fetch wait once it has been idle for a while (adaptive: the first
    # records bring back kafka_fetch_max_wait_ms); what an idle worker and broker cost
    kafka_idle_fetch_wait_ms: int = Field(default=500, ge=1)
    # a Confluent-compatible schema registry: records then carry its schema ids (else
    # Avro single-object encoding with the schema fingerprint, which needs no service)
    schema_registry_url: str | None = None
    kafka_session_timeout_seconds: float = Field(default=10.0, gt=0)
    kafka_heartbeat_seconds: float = Field(default=1.0, gt=0)
    # scale-out runtime: Redis (views, identity index, positions)
    redis_url: str = "redis://127.0.0.1:6379/0"
    # no braces, no glob characters: braces make Redis Cluster hash tags (docs/REDIS_KEYS.md)
    redis_prefix: str = Field(default="touchstream", pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
    redis_timeout_seconds: float = Field(default=2.0, gt=0)
    # scale-out runtime: the view worker (`touchstream worker`)
    worker_group: str = "touchstream-views"
    worker_batch_events: int = Field(default=5000, ge=1)
    # stored states kept in memory between batches (embedded runner, each view worker), in bytes
    state_cache_bytes: int = Field(default=256 << 20, ge=0)
    worker_host: str = "127.0.0.1"
    worker_web_port: int = 6066  # /metrics and /healthz of a worker (faust's web server)
    # graceful stop of `touchstream worker`: on SIGTERM /readyz answers 503 at once, the
    # worker keeps folding for this long, then drains the batch in flight, commits and exits
    worker_shutdown_delay_seconds: float = Field(default=0.0, ge=0)
    # graceful stop of `touchstream run`: on SIGTERM /readyz answers 503 at once, the API
    # keeps serving for shutdown_delay_seconds (load balancers and Kubernetes endpoints see
    # it not ready and stop sending), then stops accepting, finishes the requests in flight
    # (at most shutdown_grace_seconds), flushes and commits, and exits
    shutdown_delay_seconds: float = Field(default=0.0, ge=0)
    shutdown_grace_seconds: int = Field(default=10, ge=1)
    # lifecycle stages (projections.lifecycle.stages.LifecycleConfig): changing one changes what a
    # replay derives, so change them together with a replay
    lifecycle_new_days: float = Field(default=90, gt=0)
    lifecycle_recency_factor: float = Field(default=2.0, gt=0)
    lifecycle_default_interval_days: float = Field(default=45, gt=0)
    lifecycle_min_intervals: int = Field(default=2, ge=1)
    lifecycle_min_active_days: float = Field(default=14, ge=0)
    lifecycle_spend_window_days: float = Field(default=90, gt=0)
    lifecycle_spend_drop: float = Field(default=0.5, gt=0, le=1)
    lifecycle_spend_drop_min_purchases: int = Field(default=2, ge=1)
    lifecycle_lost_days: float = Field(default=365, gt=0)
    # P(alive) for declining and lost (projections.lifecycle.alive), off by default: the BG/NBD
    # parameters [r, alpha, a, b] in weeks, pinned (copy them from GET /v1/value/model;
    # the fold never follows the refitted model, so a replay gives the same transitions)
    lifecycle_p_alive_parameters: tuple[float, float, float, float] | None = None
    lifecycle_p_alive_declining_below: float = Field(default=0.5, gt=0, lt=1)
    lifecycle_p_alive_lost_below: float = Field(default=0.2, gt=0, lt=1)
    # clock ticks: the shell appends one every this many seconds (0: never; ticks can also
    # be posted to POST /v1/clock/ticks); a tick re-evaluates at most tick_limit customers
    # (the earliest deadlines first), the next tick takes the rest
    clock_tick_seconds: float = Field(default=60.0, ge=0)
    lifecycle_tick_limit: int = Field(default=10_000, ge=1)
    # customer value: the purchase model (BG/NBD) is refitted this often (0: only on
    # POST /v1/value/refit)
    value_refit_seconds: float = Field(default=3600.0, ge=0)
    # RFM monetary, Pareto and lifetime value are counted in this currency (ISO 4217)
    value_currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    # lifetime value: LTV = sum over t of margin_t * r^t / (1 + d)^t, yearly periods
    value_retention_rate: float = Field(default=0.8, ge=0, le=1)
    value_discount_rate: float = Field(default=0.1, gt=-1)
    value_horizon_years: int = Field(default=5, ge=1, le=100)
    # model-based lifetime value (BG/NBD + Gamma-Gamma, discounted as lifetimes'
    # customer_lifetime_value): horizon in months of 30 days, monthly discount rate, and
    # the share of spend that is margin (1: the value is revenue)
    value_clv_months: int = Field(default=12, ge=1, le=1200)
    value_clv_monthly_discount_rate: float = Field(default=0.01, gt=-1)
    value_margin_ratio: float = Field(default=1.0, ge=0, le=1)
    # customer segments (docs/VALUE.md): the definitions file; changing a definition
    # re-evaluates its membership over every view (embedded: at start; scale-out:
    # `touchstream segments rebuild`)
    segments_file: Path = SEGMENTS_FILE
    # the agent desk (/desk): sessions are signed with this secret (unset: a random one per
    # process, so a restart signs everyone out and API replicas do not share sessions) and
    # last this long
    desk_session_secret: SecretStr | None = None
    desk_session_hours: float = Field(default=8.0, gt=0, le=24 * 30)
    # the automatic merge policy (docs/IDENTITY.md), per identifier kind: never (the
    # default), with_another (a second identifier of the same event must agree) or alone;
    # e.g. TOUCHSTREAM_MERGE_POLICY='{"external_id": "alone", "email": "with_another"}'
    # (embedded runtime)
    merge_policy: dict[Kind, Setting] = {}
    # next best contact: the rule file (docs/RULES.md; "" turns the engine off), and the
    # window after a trigger within which the customer's next purchase converts it
    rules_file: str = str(DEFAULT_RULES_FILE)
    nbc_attribution_days: float = Field(default=7, gt=0)

    # next-best-contact delivery (docs/TRIGGERS.md): each trigger of a channel is POSTed to
    # that channel's URL, signed with the first secret (every secret while rotating: list
    # the new one first); TOUCHSTREAM_WEBHOOK_SECRETS is a JSON list or comma-separated
    webhook_urls: dict[str, str] = {}  # channel -> URL, e.g. {"call": "https://dialer.example/touchstream"}
    webhook_secrets: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    # one process delivers webhooks at a time: it holds this lease, renewed every third of it
    webhook_lease_seconds: float = Field(default=15.0, gt=0)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_max_attempts: int = Field(default=8, ge=1)  # then the trigger is a delivery dead letter
    webhook_backoff_base_seconds: float = Field(default=1.0, gt=0)  # doubled per attempt, with jitter
    webhook_backoff_cap_seconds: float = Field(default=300.0, gt=0)  # Retry-After is honoured up to it

    @field_validator("webhook_secrets", mode="before")
    @classmethod
    def _secrets_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [s.strip() for s in text.split(",") if s.strip()]
        return value

    @field_validator("webhook_urls")
    @classmethod
    def _webhook_channels(cls, urls: dict[str, str]) -> dict[str, str]:
        for channel, url in urls.items():
            if channel not in CONTACT_CHANNELS:
                raise ValueError(f"{channel!r} is not a contact channel (one of {', '.join(CONTACT_CHANNELS)})")
            if not url.startswith(("https://", "http://")):
                raise ValueError(f"the {channel} webhook URL must start with https:// or http://")
        return urls

    @model_validator(mode="after")
    def _webhooks_are_signed(self) -> Settings:
        if self.webhook_urls and not self.webhook_secrets:
            raise ValueError("webhook_secrets is required when webhook_urls is set: deliveries are always signed")
        if any(len(s.get_secret_value()) < 16 for s in self.webhook_secrets):
            raise ValueError("each webhook secret must be at least 16 characters")
        return self

    def contact_engine(self) -> ContactEngine | None:
        """The engine over the rule file; ``RuleErrors`` (every mistake, with its line) when
        the file is wrong: the platform refuses to start rather than contact on a guess."""
        if not self.rules_file:
            return None
        from projections.nbc.engine import ContactEngine
        from services.nbc.rules_file import load_rules
        from services.zones import PINNED
        return ContactEngine(load_rules(Path(self.rules_file)), PINNED, self.nbc_attribution_days)

    def fold_config(self, *, engine: ContactEngine | None | bool = True) -> FoldConfig:
        """What folds the log here (``projections.batch``): stages, rules, segments, the RFM
        currency, the tick limit. ``engine``: another one (a backtest's rules), or False for none."""
        from projections.batch import FoldConfig
        from services.segments.file import load_segments
        chosen = self.contact_engine() if engine is True else (engine or None)
        return FoldConfig(self.lifecycle(), chosen, load_segments(self.segments_file), self.value_currency,
                          self.lifecycle_tick_limit)

    def lifecycle(self) -> LifecycleConfig:
        return LifecycleConfig(
            new_days=self.lifecycle_new_days, recency_factor=self.lifecycle_recency_factor,
            default_interval_days=self.lifecycle_default_interval_days, min_intervals=self.lifecycle_min_intervals,
            min_active_days=self.lifecycle_min_active_days, spend_window_days=self.lifecycle_spend_window_days,
            spend_drop=self.lifecycle_spend_drop, spend_drop_min_purchases=self.lifecycle_spend_drop_min_purchases,
            lost_days=self.lifecycle_lost_days, alive=self._alive_rule(),
        )

    def _alive_rule(self) -> AliveRule | None:
        if self.lifecycle_p_alive_parameters is None:
            return None
        return AliveRule(*self.lifecycle_p_alive_parameters, declining_below=self.lifecycle_p_alive_declining_below,
                         lost_below=self.lifecycle_p_alive_lost_below)

    @property
    def log_path(self) -> Path:
        return self.data_dir / "log.sqlite"

    @property
    def views_path(self) -> Path:
        return self.data_dir / "views.sqlite"
