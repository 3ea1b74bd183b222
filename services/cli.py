"""``touchstream``: run the platform, replay projections, generate traffic, benchmark.

All settings come from the environment (``services.settings``); options here only say
what to do, not how the platform is configured.
"""

from __future__ import annotations

import json
import secrets
import tempfile
import time
from pathlib import Path
from typing import Annotated

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
    """Run the embedded platform: HTTP API, durable log, projections, in one process."""
    import uvicorn

    from services.api.app import create_app
    from services.platform import EmbeddedPlatform

    settings = _settings_with_dev_key(Settings())
    configure_logging(settings.log_level, settings.log_format)
    api = create_app(EmbeddedPlatform(settings))
    uvicorn.run(api, host=host or settings.host, port=port or settings.port, log_config=None,
                access_log=False, loop="uvloop", http="httptools", timeout_graceful_shutdown=10)


@app.command()
def replay(
    into: Annotated[Path | None, typer.Option(help="rebuild into this file (default: a temporary one)")] = None,
) -> None:
    """Rebuild every view from the log into a fresh store; print both digests."""
    from services.eventlog import TouchpointLog
    from services.gc_tuning import tune_gc
    from services.runner import ProjectionRunner
    from services.viewstore import ViewStore

    settings = Settings()
    configure_logging("warning", settings.log_format)
    tune_gc()
    log = TouchpointLog(settings.log_path)
    live = ViewStore(settings.views_path) if settings.views_path.exists() else None
    target = live.position() if live is not None else log.head()
    with tempfile.TemporaryDirectory() as scratch:
        fresh = ViewStore(into or Path(scratch) / "views.sqlite")
        runner = ProjectionRunner(log, fresh, batch=5000, until=target)
        started = time.perf_counter()
        runner.catch_up()
        seconds = time.perf_counter() - started
        rebuilt = fresh.digest()
        report = {
            "position": runner.position,
            "events_per_second": round(target / seconds) if seconds and target else None,
            "seconds": round(seconds, 3),
            "rebuilt_digest": rebuilt,
            "live_digest": live.digest() if live is not None else None,
        }
    report["identical"] = report["live_digest"] in (None, rebuilt)
    typer.echo(json.dumps(report, indent=2))
    raise typer.Exit(0 if report["identical"] else 1)


@app.command()
def schemas(directory: Annotated[Path | None, typer.Argument()] = None) -> None:
    """Check that every schema version reads what the previous one wrote."""
    from services.contracts.compatibility import main as check

    raise typer.Exit(check([str(directory)] if directory else []))


if __name__ == "__main__":
    app()
