"""``touchstream up`` and ``touchstream down``: the local stack for developers and demos.

``up --runtime kafka`` starts ``tools.stack.Stack`` in the data directory
(``TOUCHSTREAM_DATA_DIR``), prints the URLs and an API key, then either stays in the
foreground (Ctrl-C or SIGTERM stops the stack in order; a process of the stack that dies
stops it too) or, with ``--detach``, leaves it running for ``touchstream down``, which
reads ``stack.json`` and stops the processes it names in the same order. ``up --runtime
embedded`` is ``touchstream run``.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from services.settings import Settings

if TYPE_CHECKING:  # the stack's modules load only when a stack command runs: the CLI starts fast
    from tools.stack import Stack
    from tools.stack_process import StackProcess

__all__ = ["up", "down"]

RUNTIMES = ("kafka", "embedded")


def up(
    runtime: Annotated[str, typer.Option(help="kafka (broker, Redis, workers, API) or embedded (one process)")] = "kafka",
    workers: Annotated[int, typer.Option(min=1, help="view workers (kafka runtime)")] = 2,
    port: Annotated[int, typer.Option(help="API port")] = 8080,
    detach: Annotated[bool, typer.Option(help="leave the stack running in the background (stop: touchstream down)")] = False,
) -> None:
    """Start the platform locally: by default the scale-out stack (Tansu broker, Redis,
    view workers, API), logs and stack.json in <data dir>/stack/."""
    from services.cli import _settings_with_dev_key, run
    from tools.redis_server import RedisServerFailed
    from tools.stack import Stack, StackFailed, manifest_path
    from tools.tansu import TansuFailed

    if runtime not in RUNTIMES:
        raise typer.BadParameter(f"one of {', '.join(RUNTIMES)}", param_hint="--runtime")
    if runtime == "embedded":
        if detach:
            raise typer.BadParameter("--detach is for the kafka runtime; the embedded one is `touchstream run`")
        run(host=None, port=port)
        return
    settings = Settings()
    running = _running(manifest_path(settings.data_dir))
    if running:
        typer.echo(f"A stack is already running from {manifest_path(settings.data_dir)} (pids "
                   f"{', '.join(str(p) for p, _ in running)}): `touchstream down` first.", err=True)
        raise typer.Exit(1)
    _signals_interrupt()  # a SIGTERM while starting stops what started, like Ctrl-C
    keyed = _settings_with_dev_key(settings)
    stack = Stack(settings.data_dir, workers=workers, api_port=port,
                  settings={"TOUCHSTREAM_API_KEYS": json.dumps({k: list(v) for k, v in keyed.api_keys.items()})})
    typer.echo(f"Starting Tansu, Redis, {workers} worker(s) and the API (logs in {stack.logs}) ...", err=True)
    started = time.monotonic()
    try:
        stack.start()
    except (StackFailed, TansuFailed, RedisServerFailed) as failure:
        typer.echo(f"touchstream up: {failure}", err=True)
        raise typer.Exit(1) from None
    _print_stack(stack, None if settings.api_keys else keyed, time.monotonic() - started, detach)
    if detach:
        return
    _serve_until_stopped(stack)


def down() -> None:
    """Stop the stack `touchstream up --detach` started (API, workers, broker, Redis)."""
    from tools.stack import manifest_path
    from tools.stack_process import stop_pids

    path = manifest_path(Settings().data_dir)
    if not path.exists():
        typer.echo(f"No stack to stop ({path} does not exist).", err=True)
        return
    processes = json.loads(path.read_text())["processes"]
    killed: list[int] = []
    for group in (["api"], [p["name"] for p in processes if p["name"].startswith("worker-")], ["broker"], ["redis"]):
        killed += stop_pids([(p["pid"], p["started_at"]) for p in processes if p["name"] in group and p["pid"]])
    path.unlink(missing_ok=True)
    typer.echo(f"Stopped {len(processes)} processes" + (f" (killed after the bound: {killed})" if killed else "") + ".")


def _running(path: Path) -> list[tuple[int, str | None]]:
    """The processes a stack.json names that still run (a stale file names none)."""
    from tools.stack_process import alive

    if not path.exists():
        return []
    entries = [(p["pid"], p["started_at"]) for p in json.loads(path.read_text())["processes"] if p["pid"]]
    return [entry for entry in entries if alive(*entry)]


def _print_stack(stack: Stack, keyed: Settings | None, seconds: float, detach: bool) -> None:
    lines = [
        f"Touchstream scale-out stack up in {seconds:.1f} s",
        f"  API        {stack.api_url}   (docs {stack.api_url}/docs)",
    ]
    if keyed is not None:
        lines.append(f"  API key    {next(iter(keyed.api_keys))}   (admin; in {keyed.data_dir / 'dev-api-key'})")
    lines += [
        f"  Kafka      {stack.bootstrap}   (Tansu, in memory: `down` forgets every event)",
        f"  Redis      {stack.redis_url}",
        *(f"  {w.name:<10} http://127.0.0.1:{w.port}/readyz   partitions {w.readiness.get('partitions')}"
          for w in stack.workers),
        f"  logs       {stack.logs}",
        "Stop with `touchstream down`." if detach else "Stop with Ctrl-C.",
    ]
    typer.echo("\n".join(lines))


def _signals_interrupt() -> None:
    def interrupt(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


RESTART_BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)  # seconds before each further restart of one process


def _serve_until_stopped(stack: Stack) -> None:
    """Until Ctrl-C, SIGTERM or a process of the stack stopped from outside (`touchstream
    down`); then stop the stack in order. A process that dies (a crash, a SIGKILL, an OOM
    kill) is restarted, after a backoff growing with its restarts, and said so."""
    restarts: dict[str, int] = {}
    due: dict[str, float] = {}  # process name -> when to start it again
    stopped: list[StackProcess] = []
    try:
        while not stopped:
            time.sleep(0.5)
            dead = stack.exited()
            stopped = [p for p in dead if p.process is not None and p.process.returncode in (0, -signal.SIGTERM)]
            for process in dead:
                if process in stopped or process.process is None:
                    continue
                if process.name not in due:
                    wait = RESTART_BACKOFF[min(restarts.get(process.name, 0), len(RESTART_BACKOFF) - 1)]
                    due[process.name] = time.monotonic() + wait
                    typer.echo(f"touchstream up: {process.name} exited with {process.process.returncode}; restarting "
                               f"it in {wait:g} s. Last lines of {process.log_path}:\n{process.tail()}", err=True)
                elif time.monotonic() >= due[process.name]:
                    process.spawn()
                    restarts[process.name] = restarts.get(process.name, 0) + 1
                    del due[process.name]
                    stack.write_manifest()  # `touchstream down` and status name the new pid
                    typer.echo(f"touchstream up: {process.name} restarted (restart {restarts[process.name]})", err=True)
    except KeyboardInterrupt:
        pass
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)  # the stop is bounded: let it finish
    if stopped:
        typer.echo(f"touchstream up: {', '.join(p.name for p in stopped)} stopped from outside (touchstream down?)",
                   err=True)
    typer.echo("Stopping the stack (API, workers, broker, Redis) ...", err=True)
    stack.stop()
