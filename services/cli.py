"""``touchstream``: run the platform, replay projections, generate traffic, benchmark.

All settings come from the environment (``services.settings``); options here only say
what to do, not how the platform is configured.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from services.logging import configure_logging
from services.settings import Settings

__all__ = ["app"]

app = typer.Typer(help="Touchstream: touchpoints in, 360° customer views out.", no_args_is_help=True)


def _settings_with_dev_key(settings: Settings) -> Settings:
    """With no API key configured, a local run gets one (stored in the data dir, 0600)."""
    if settings.api_keys:
        return settings
    path = settings.data_dir / "dev-api-key"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(secrets.token_urlsafe(24) + "\n")
        path.chmod(0o600)
    typer.echo(f"No TOUCHSTREAM_API_KEYS set: using the local admin key in {path}", err=True)
    return settings.model_copy(update={"api_keys": {path.read_text().strip(): ("admin",)}})


@app.command()
def run(
    host: Annotated[str | None, typer.Option(help="listen address (default: settings)")] = None,
    port: Annotated[int | None, typer.Option(help="listen port (default: settings)")] = None,
) -> None:
    """Run the HTTP API: the embedded platform (log, projections, in one process), or with
    TOUCHSTREAM_RUNTIME=kafka the scale-out API (ingest to Kafka, reads from Redis).
    SIGTERM: not ready at once, serving for TOUCHSTREAM_SHUTDOWN_DELAY_SECONDS, then the
    requests in flight finish and everything accepted is committed before exit."""
    from services.api.app import create_app
    from services.api.serving import serve
    from services.ports import Platform

    settings = _settings_with_dev_key(Settings())
    configure_logging(settings.log_level, settings.log_format)
    platform: Platform
    if settings.runtime == "kafka":
        from services.scaleout.platform import KafkaPlatform

        platform = KafkaPlatform(settings)
    else:
        from services.embedded.platform import EmbeddedPlatform

        platform = EmbeddedPlatform(settings)
    host, port = host or settings.host, port or settings.port
    serve(create_app(platform), platform, host, port, banner=_banner(settings, host, port))


def _banner(settings: Settings, host: str, port: int) -> str:
    """Where a newcomer goes once the platform listens: the API, its docs, the key."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - naming, not binding
    url = f"http://{shown}:{port}"
    key = settings.data_dir / "dev-api-key"
    where_key = (f"the admin key is in {key} (send it as: Authorization: Bearer $(cat {key}))"
                 if key.exists() and len(settings.api_keys) == 1 else "API keys: from TOUCHSTREAM_API_KEYS")
    return (f"\nTouchstream ({settings.runtime}) is listening on {url}\n"
            f"  API docs:  {url}/docs  (OpenAPI: {url}/openapi.json)\n"
            f"  {where_key}\n"
            f"  health:    {url}/readyz   metrics: {url}/metrics\n")


@app.command()
def worker() -> None:
    """Run a scale-out view worker (faust): fold the touchpoints topic into Redis."""
    from services.scaleout.worker.app import run_worker

    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    run_worker(settings)


@app.command()
def tail(
    topic: Annotated[str, typer.Argument(help="e.g. touchstream.touchpoints.v1, touchstream.customer-views.v1")],
    new: Annotated[bool, typer.Option("--new", help="only records arriving from now on (default: from the start)")] = False,
    limit: Annotated[int | None, typer.Option(help="stop after this many records")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep waiting for records (default: stop "
                                                                 "after 2 s without one)")] = False,
) -> None:
    """Print a topic's records as JSON lines, decoded (Avro contracts, JSON documents), from
    TOUCHSTREAM_KAFKA_BOOTSTRAP. Works with the bundled broker, which librdkafka before 2.1
    (Debian's kcat) cannot talk to. Reads without a consumer group: commits nothing."""
    from aiokafka.errors import KafkaConnectionError

    from services.scaleout.kafka.tail import run as run_tail

    settings = Settings()
    configure_logging("warning", settings.log_format)
    try:
        run_tail(settings.kafka_bootstrap, topic, from_beginning=not new, limit=limit, follow=follow)
    except LookupError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(1) from None
    except KafkaConnectionError as error:
        typer.echo(f"Kafka unreachable at {settings.kafka_bootstrap}: {error}", err=True)
        raise typer.Exit(2) from None


@app.command()
def replay(
    into: Annotated[Path | None, typer.Option(help="rebuild into this file (default: a temporary one)")] = None,
) -> None:
    """Rebuild every view from the log and compare it with the live views at one
    snapshot, while the platform runs. Embedded: the log into a fresh store, up to the
    live store's position, compared in the same read transaction. TOUCHSTREAM_RUNTIME=kafka:
    every partition replayed through the core up to its stored position in Redis, read in
    one round trip, compared with every stored state (states written meanwhile: replayed further).
    Prints a JSON report naming each differing customer and field. Exit 0: identical (lag
    and still-moving customers are not differences); 1: a difference; 2: the log or the
    view store could not be read."""
    settings = Settings()
    configure_logging("warning", settings.log_format)
    started = time.perf_counter()
    if settings.runtime == "kafka":
        import asyncio

        from services.scaleout.worker.replay import ReplayUnavailable, verify

        try:
            report = asyncio.run(verify(settings))
        except ReplayUnavailable as error:
            _replay_failed(settings.runtime, str(error))
        report["seconds"] = round(time.perf_counter() - started, 3)
    else:
        import sqlite3

        from eventsourcing.persistence import OperationalError

        from services.embedded.replay import verify as verify_embedded
        from services.gc_tuning import tune_gc

        tune_gc()
        try:
            report = verify_embedded(settings, into)
        except (sqlite3.OperationalError, OperationalError, OSError) as error:
            _replay_failed(settings.runtime, f"{type(error).__name__}: {error}")
    typer.echo(json.dumps(report, indent=2))
    raise typer.Exit(0 if report["identical"] else 1)


def _replay_failed(runtime: str, error: str) -> NoReturn:
    """The log or the views could not be read: no verdict (exit 2)."""
    typer.echo(json.dumps({"runtime": runtime, "identical": None, "error": error}, indent=2))
    raise typer.Exit(2) from None


@app.command()
def generate(
    customers: Annotated[int, typer.Option(min=1, help="size of the customer population")] = 1000,
    events: Annotated[int, typer.Option(min=1, help="events to emit, sender retries included")] = 20000,
    seed: Annotated[int, typer.Option(help="the same seed gives the same traffic")] = 7,
    start: Annotated[str, typer.Option(help="first day of the simulated period (YYYY-MM-DD)")] = "2025-01-01",
    days: Annotated[int, typer.Option(min=1, help="length of the simulated period")] = 365,
    duplicate_rate: Annotated[float, typer.Option(min=0, max=1, help="share of events sent again")] = 0.01,
    late_rate: Annotated[float, typer.Option(min=0, max=1, help="share of events delivered out of order")] = 0.02,
    out: Annotated[Path | None, typer.Option(help="write JSON lines to this file")] = None,
    url: Annotated[str | None, typer.Option(help="post to this platform, e.g. http://127.0.0.1:8080")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="TOUCHSTREAM_GENERATE_API_KEY",
                                                help="ingest key for --url")] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=1000, help="events per POST")] = 500,
    concurrency: Annotated[int, typer.Option(min=1, help="batches in flight")] = 4,
    progress: Annotated[bool, typer.Option(help="progress bar on stderr")] = True,
) -> None:
    """Realistic synthetic CRM traffic, the same for the same seed: into a file or a running platform."""
    from datetime import date

    from tools.traffic import DeliveryError, TrafficOptions, post_http, write_jsonl
    from tools.traffic import generate as traffic

    if (out is None) == (url is None):
        raise typer.BadParameter("give either --out FILE.jsonl or --url URL")
    if url is not None and not api_key:
        raise typer.BadParameter("--url needs --api-key (or TOUCHSTREAM_GENERATE_API_KEY)")
    try:
        first_day = date.fromisoformat(start)
    except ValueError:
        raise typer.BadParameter(f"not a date: {start!r}", param_hint="--start") from None
    # Events naming a customer by identifiers alone come after every batch that may overtake them.
    options = TrafficOptions(customers, events, seed, first_day, days, duplicate_rate, late_rate,
                             link_after=max(2000, batch_size * concurrency))
    started = time.perf_counter()
    if out is not None:
        from services.progress import counted, meter

        with meter("generating events", total=events, enabled=progress) as shown:
            written = write_jsonl(counted(traffic(options), shown), out)
        seconds = time.perf_counter() - started
        summary = {"written": written, "path": str(out), "seconds": round(seconds, 3),
                   "events_per_second": round(written / seconds) if seconds else None}
    else:
        try:
            summary = post_http(traffic(options), url or "", api_key or "", batch_size, concurrency,
                                progress=progress, total=events)
        except DeliveryError as error:
            typer.echo(f"generate: {error}", err=True)
            raise typer.Exit(1) from None
    typer.echo(json.dumps(summary))


@app.command()
def schemas(directory: Annotated[Path | None, typer.Argument()] = None) -> None:
    """Check that every schema version reads what the previous one wrote."""
    from services.contracts.compatibility import main as check

    raise typer.Exit(check([str(directory)] if directory else []))


def _generated_page(path: Path, command: str, text: str, out: Path | None, check: bool) -> None:
    """What every `*-doc` command does with its page: print it, write it, or check it
    (exit 1 while the committed page differs from the code's)."""
    if check:
        if (path.read_text(encoding="utf-8") if path.exists() else "") != text:
            typer.echo(f"{path} is stale: run `touchstream {command} --out {path}`", err=True)
            raise typer.Exit(1)
        return
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")


@app.command("metrics-doc")
def metrics_doc(
    out: Annotated[Path | None, typer.Option(help="write the catalogue here (default: print it)")] = None,
    check: Annotated[bool, typer.Option(help="exit 1 if docs/METRICS.md differs from the code")] = False,
) -> None:
    """The metrics catalogue (docs/METRICS.md) generated from services/metrics.py."""
    from services.metrics_catalogue import METRICS_DOC, render_markdown

    _generated_page(METRICS_DOC, "metrics-doc", render_markdown(), out, check)


@app.command("topics-doc")
def topics_doc(
    out: Annotated[Path | None, typer.Option(help="write the page here (default: print it)")] = None,
    check: Annotated[bool, typer.Option(help="exit 1 if docs/TOPICS.md differs from the code")] = False,
) -> None:
    """The Kafka topics page (docs/TOPICS.md) generated from schemas/topics.yaml and the
    code that writes each record's headers."""
    from services.contracts.topics_doc import TOPICS_DOC, render_markdown

    _generated_page(TOPICS_DOC, "topics-doc", render_markdown(), out, check)


@app.command()
def repartition(
    partitions: Annotated[int, typer.Option(min=1, help="the new generation's partition count")],
    topic: Annotated[str, typer.Option(help="the new generation's touchpoints topic")],
    prefix: Annotated[str, typer.Option(help="the new generation's Redis prefix")],
    finish: Annotated[bool, typer.Option("--finish", help="once the new workers caught up, before the new API "
                                         "starts: webhook dispatchers resume at the end of the new feeds")] = False,
) -> None:
    """Scale-out: copy the touchpoints topic and what ingest knows into a new generation
    (a topic of --partitions partitions and a Redis prefix), each customer on their new
    partition, in the order ingest acknowledged; run again with ingest stopped to copy
    what came since. Then start workers and the API with TOUCHSTREAM_KAFKA_TOUCHPOINTS_TOPIC,
    TOUCHSTREAM_KAFKA_PARTITIONS and TOUCHSTREAM_REDIS_PREFIX of the new generation
    (docs/SCALE_OUT.md). Prints a JSON report; exit 2 if the broker or Redis could not
    be read."""
    import asyncio

    from aiokafka.errors import KafkaError
    from redis.exceptions import RedisError

    from services.scaleout.repartition import finish as finish_generation
    from services.scaleout.repartition import repartition as copy_generation

    settings = Settings()
    configure_logging("warning", settings.log_format)
    try:
        if finish:
            report: dict[str, object] = {"delivery_cursors": asyncio.run(
                finish_generation(settings, prefix=prefix, partitions=partitions))}
        else:
            report = asyncio.run(copy_generation(settings, topic=topic, partitions=partitions, prefix=prefix))
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    except (KafkaError, RedisError, OSError, TimeoutError) as error:
        typer.echo(json.dumps({"error": f"{type(error).__name__}: {error}"}))
        raise typer.Exit(2) from None
    typer.echo(json.dumps(report, indent=2))


@app.command("redis-keys-doc")
def redis_keys_doc(
    out: Annotated[Path | None, typer.Option(help="write the page here (default: print it)")] = None,
    check: Annotated[bool, typer.Option(help="exit 1 if docs/REDIS_KEYS.md differs from the code")] = False,
) -> None:
    """The Redis key layout page (docs/REDIS_KEYS.md) generated from services/scaleout/redis/keys.py."""
    from services.scaleout.redis.keys_doc import REDIS_KEYS_DOC, render_markdown

    _generated_page(REDIS_KEYS_DOC, "redis-keys-doc", render_markdown(), out, check)


@app.command()
def bench(
    scale: Annotated[str, typer.Option(help="full (the recorded figures) or quick (a smoke run)")] = "full",
    json_out: Annotated[Path | None, typer.Option("--json", help="also write the figures as JSON here")] = None,
    spine: Annotated[bool, typer.Option(help="the embedded runtime's figures")] = True,
    kafka: Annotated[bool, typer.Option(help="the view worker beside naive faust and the raw-consumer ceiling, "
                                             "on a private Tansu broker (needs the test extra)")] = False,
    decider: Annotated[bool, typer.Option(help="only the batch decider beside a baseline revision checked out from "
                                               "git: cost and state bytes against history length, the runner, "
                                               "with --kafka the worker")] = False,
    baseline: Annotated[str, typer.Option(help="the revision --decider compares with")] = "cc49017",
) -> None:
    """Measure the spine's figures beside a same-run baseline (docs/BENCHMARKS.md)."""
    from tools.bench.run import SCALES, print_report, run_bench

    if scale not in SCALES:
        raise typer.BadParameter(f"scale is one of {sorted(SCALES)}")
    configure_logging("warning", "console")
    # --decider measures the batch decider alone (with --kafka: its worker too)
    results = run_bench(scale, spine=spine, kafka=kafka) if not decider else {}
    if not decider:
        print_report(results)
    else:
        from tools.bench.decider import render, run_decider_bench

        quick = scale == "quick"
        results["decider"] = run_decider_bench(baseline=baseline, events=5_000 if quick else 50_000,
                                               customers=1_000 if quick else 10_000, kafka=kafka,
                                               kafka_events=5_000 if quick else 50_000, rounds=1 if quick else 2)
        for line in render(results["decider"]):
            typer.echo(line)
    if json_out is not None:
        json_out.write_text(json.dumps(results, indent=2) + "\n")


from tools.stack_commands import down as stack_down  # noqa: E402 - the local stack's commands
from tools.stack_commands import restart as stack_restart  # noqa: E402
from tools.stack_commands import status as stack_status  # noqa: E402
from tools.stack_commands import up as stack_up  # noqa: E402

app.command("up")(stack_up)
app.command("down")(stack_down)
app.command("status")(stack_status)
app.command("restart")(stack_restart)

from services.nbc.commands import backtest, rules_app  # noqa: E402 - next-best-contact rule files

app.add_typer(rules_app, name="rules")
app.command("backtest")(backtest)

from services.segments.commands import segments_app  # noqa: E402 - customer segment files

app.add_typer(segments_app, name="segments")

from services.value.commands import value_app  # noqa: E402 - the purchase model's validation

app.add_typer(value_app, name="value")


if __name__ == "__main__":
    app()
