"""``touchstream up`` and ``touchstream down``: the local stack for developers and demos.

``up --runtime kafka`` starts ``tools.stack.Stack`` in the data directory
(``TOUCHSTREAM_DATA_DIR``), prints the URLs and an API key, and supervises it: a process
of the stack that dies is started again (with a growing backoff), and Ctrl-C or SIGTERM
stops the stack in order. With ``--detach`` the supervisor itself runs in the background
(a session of its own, its output in ``stack/logs/supervisor.log``) and ``up`` returns
once the stack is up; ``touchstream down`` asks the supervisor to stop the stack (SIGTERM)
or, with none alive, stops the processes ``stack.json`` names in the same order.
``up --runtime embedded`` is ``touchstream run``.
"""

from __future__ import annotations

import json
import os
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

__all__ = ["up", "down", "status", "restart"]

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
    if detach:
        _detach(settings.data_dir, workers, port)
        return
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
    _print_stack(stack, None if settings.api_keys else keyed, time.monotonic() - started,
                 os.environ.get(DETACHED) == "1")
    _serve_until_stopped(stack)


DETACHED = "TOUCHSTREAM_UP_DETACHED"  # set for the background supervisor `up --detach` starts
DETACH_WAIT_SECONDS = 300.0


def _detach(data_dir: Path, workers: int, port: int) -> None:
    """Run ``touchstream up`` (the supervisor) in a session of its own, its output in
    supervisor.log; return once it printed the stack's addresses, or fail with its log."""
    import subprocess
    import sys

    log_path = Path(data_dir) / "stack" / "logs" / "supervisor.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        start = log.tell()
        child = subprocess.Popen(
            [sys.executable, "-c", "from services.cli import app; app()", "up", "--runtime", "kafka",
             "--workers", str(workers), "--port", str(port)],
            env={**os.environ, DETACHED: "1"}, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True)
    deadline = time.monotonic() + DETACH_WAIT_SECONDS
    while time.monotonic() < deadline:
        text = log_path.read_bytes()[start:].decode(errors="replace")
        summary = text[text.find("Touchstream scale-out stack up"):] if "Touchstream scale-out stack up" in text else ""
        if "Stop with `touchstream down`." in summary:
            typer.echo(summary[:summary.index("Stop with `touchstream down`.")] + "Stop with `touchstream down`.")
            typer.echo(f"  supervisor pid {child.pid}: restarts a process that dies; its log is {log_path}")
            return
        if child.poll() is not None:
            typer.echo(f"touchstream up: the stack did not start (exit {child.returncode}); {log_path}:\n{text[-3000:]}",
                       err=True)
            raise typer.Exit(1)
        time.sleep(0.2)
    child.send_signal(signal.SIGTERM)
    typer.echo(f"touchstream up: the stack was not up within {DETACH_WAIT_SECONDS:g} s; see {log_path}", err=True)
    raise typer.Exit(1)


def down() -> None:
    """Stop the stack `touchstream up` started (API, workers, broker, Redis): through its
    supervisor when one runs, else each process stack.json names."""
    from tools.stack import manifest_path
    from tools.stack_process import stop_pids

    path = manifest_path(Settings().data_dir)
    if not path.exists():
        typer.echo(f"No stack to stop ({path} does not exist).", err=True)
        return
    manifest = json.loads(path.read_text())
    processes = manifest["processes"]
    supervisor = manifest.get("supervisor")
    if supervisor and _alive(supervisor["pid"], supervisor.get("started_at")):
        os.kill(supervisor["pid"], signal.SIGTERM)  # it stops the stack in order, then exits
        deadline = time.monotonic() + SUPERVISOR_STOP_SECONDS
        while time.monotonic() < deadline and _alive(supervisor["pid"], supervisor.get("started_at")):
            time.sleep(0.2)
    killed: list[int] = []
    for group in (["api"], [p["name"] for p in processes if p["name"].startswith("worker-")], ["broker"], ["redis"]):
        killed += stop_pids([(p["pid"], p["started_at"]) for p in processes if p["name"] in group and p["pid"]])
    path.unlink(missing_ok=True)
    typer.echo(f"Stopped {len(processes)} processes" + (f" (killed after the bound: {killed})" if killed else "") + ".")


def status(
    as_json: Annotated[bool, typer.Option("--json", help="the report as JSON")] = False,
) -> None:
    """Each process of the stack `touchstream up` started: running or not, ready or not
    (the API's and workers' /readyz, the broker's and Redis' ports), and whether a
    supervisor restarts what dies. Exit 0: everything runs and is ready; 1: not; 2: no stack."""
    from tools.stack import manifest_path

    path = manifest_path(Settings().data_dir)
    if not path.exists():
        typer.echo(f"No stack ({path} does not exist): start one with `touchstream up`.", err=True)
        raise typer.Exit(2)
    manifest = json.loads(path.read_text())
    rows = [_process_status(p) for p in manifest["processes"]]
    supervisor = manifest.get("supervisor")
    supervised = bool(supervisor) and _alive(supervisor["pid"], supervisor.get("started_at"))
    healthy = all(r["running"] and r["ready"] for r in rows)
    if as_json:
        typer.echo(json.dumps({"healthy": healthy, "supervised": supervised, "processes": rows}, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table("process", "pid", "port", "running", "ready", "detail", title=f"stack in {manifest['data_dir']}")
        for r in rows:
            table.add_row(str(r["name"]), str(r["pid"] or "-"), str(r["port"]), "yes" if r["running"] else "NO",
                          "yes" if r["ready"] else "NO", str(r["detail"]))
        console = Console()
        console.print(table)
        console.print(f"supervised: {'yes (a process that dies is restarted)' if supervised else 'NO'}")
    raise typer.Exit(0 if healthy else 1)


def _alive(pid: int, started: str | None) -> bool:
    from tools.stack_process import alive

    return alive(pid, started)


def _process_status(entry: dict[str, object]) -> dict[str, object]:
    """One process: alive (pid and start time), and ready: /readyz for the API and the
    workers (half a second), the port accepting a connection for the broker and Redis."""
    import socket

    import httpx

    name, pid, port = str(entry["name"]), entry["pid"], int(entry["port"])  # type: ignore[call-overload]
    running = isinstance(pid, int) and _alive(pid, entry.get("started_at"))  # type: ignore[arg-type]
    ready, detail = False, "not running"
    if running and (name == "api" or name.startswith("worker-")):
        try:
            answer = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=0.5)
            body = answer.json()
            ready = answer.status_code == 200 and bool(body.get("ready", True))
            checks = body.get("checks") or {}
            detail = ", ".join(f"{k} {v}" for k, v in checks.items()) if checks else f"HTTP {answer.status_code}"
            if "partitions" in body:
                detail = f"partitions {body['partitions']}; {detail}"
        except (httpx.HTTPError, ValueError) as error:
            detail = f"/readyz: {type(error).__name__}"
    elif running:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                ready, detail = True, "port open"
        except OSError as error:
            detail = f"port {port}: {error.strerror or type(error).__name__}"
    return {"name": name, "pid": pid, "port": port, "running": running, "ready": ready, "detail": detail}


def restart(
    name: Annotated[str, typer.Argument(help="the process to restart: api, worker-1, worker-2, ...")],
    wait: Annotated[float, typer.Option(min=1, help="seconds to wait for it to be back")] = 60.0,
) -> None:
    """Restart one process of the stack gracefully (SIGTERM, then started again at once),
    through the supervisor of `touchstream up`, which keeps stack.json current. Exit 0
    once it runs again under a new pid; 1 if it did not within --wait."""
    from tools.stack import manifest_path, restart_request

    path = manifest_path(Settings().data_dir)
    if not path.exists():
        typer.echo(f"No stack ({path} does not exist).", err=True)
        raise typer.Exit(2)
    manifest = json.loads(path.read_text())
    names = [p["name"] for p in manifest["processes"] if p["name"] in ("api",) or p["name"].startswith("worker-")]
    if name not in names:
        raise typer.BadParameter(f"one of {', '.join(names)} (the broker and Redis hold the stack's state: "
                                 "restart the stack instead)", param_hint="NAME")
    supervisor = manifest.get("supervisor")
    if not supervisor or not _alive(supervisor["pid"], supervisor.get("started_at")):
        typer.echo("No supervisor runs for this stack: restart it with `touchstream down` and `touchstream up`.",
                   err=True)
        raise typer.Exit(1)
    before = next(p["pid"] for p in manifest["processes"] if p["name"] == name)
    request = restart_request(Settings().data_dir, name)
    request.touch()
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        time.sleep(0.2)
        current = {p["name"]: p for p in json.loads(path.read_text())["processes"]}[name]
        if not request.exists() and current["pid"] not in (None, before) and _alive(current["pid"],
                                                                                     current["started_at"]):
            typer.echo(f"{name} restarted: pid {before} -> {current['pid']}")
            return
    typer.echo(f"{name} was not back within {wait:g} s: see `touchstream status` and its log", err=True)
    raise typer.Exit(1)


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


SUPERVISOR_STOP_SECONDS = 90.0  # `down` waits this long for the supervisor to stop the stack
RESTART_BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)  # seconds before each further restart of one process


def _serve_until_stopped(stack: Stack) -> None:
    from tools.stack import restart_request

    """Until Ctrl-C, SIGTERM or a process of the stack stopped from outside (`touchstream
    down`); then stop the stack in order. A process that dies (a crash, a SIGKILL, an OOM
    kill) is restarted, after a backoff growing with its restarts, and said so."""
    restarts: dict[str, int] = {}
    due: dict[str, float] = {}  # process name -> when to start it again
    stopped: list[StackProcess] = []
    stack.supervisor = os.getpid()
    stack.write_manifest()  # `touchstream status` and `restart` find the supervisor
    try:
        while not stopped:
            time.sleep(0.5)
            for process in stack.restart_requested():
                typer.echo(f"touchstream up: restarting {process.name} on request", err=True)
                process.signal(signal.SIGTERM)
                if process.wait(30) is None:
                    process.kill()
                process.spawn()
                stack.write_manifest()
                restart_request(stack.data_dir, process.name).unlink(missing_ok=True)
                typer.echo(f"touchstream up: {process.name} restarted (pid {process.pid})", err=True)
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
