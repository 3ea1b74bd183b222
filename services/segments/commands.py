"""``touchstream segments check FILE`` and ``touchstream segments rebuild``.

``check`` prints ``OK`` with the segments a file defines and exits 0, or every error
(one per broken segment, ``FILE:LINE:COLUMN: segment ID (vN): FIELD: problem``) on
stderr and exits 1. ``rebuild`` (scale-out) re-evaluates every view stored in Redis
against the segments whose definition changed since the last rebuild, with the workers
stopped; the embedded runtime does this by itself when it starts.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["segments_app"]

segments_app = typer.Typer(help="Customer segment files (docs/VALUE.md).", no_args_is_help=True)


@segments_app.command("check")
def check(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                               help="a YAML segment file, e.g. rules/segments.yaml")]) -> None:
    """Compile a segment file: OK with its segments, or every error with its line and exit status 1."""
    from projections.predicates.errors import RuleErrors
    from services.segments.file import load_segments

    try:
        segments = load_segments(file)
    except RuleErrors as errors:
        for error in errors.errors:
            typer.echo(str(error), err=True)
        typer.echo(f"{file}: {len(errors.errors)} error{'s' * (len(errors.errors) != 1)}", err=True)
        raise typer.Exit(1) from None
    count = len(segments.segments)
    typer.echo(f"{file}: OK, {count} segment{'s' * (count != 1)}: {', '.join(s.label for s in segments.segments)}")


@segments_app.command("rebuild")
def rebuild() -> None:
    """Scale-out: re-evaluate the segments whose definition changed over every stored view
    (stop the workers first); prints the entries and exits it recorded."""
    from services.scaleout.redis.segments import rebuild as rebuild_members
    from services.scaleout.redis.views import RedisViewStore
    from services.segments.file import load_segments
    from services.settings import Settings

    settings = Settings()

    async def go() -> int:
        async with RedisViewStore(settings.redis_url, settings.redis_prefix, partitions=settings.kafka_partitions) as store:
            return len(await rebuild_members(store, load_segments(settings.segments_file)))

    typer.echo(f"segments rebuilt: {asyncio.run(go())} entries and exits")
