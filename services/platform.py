"""The embedded platform: one process owning the log, the view store, the projection
runner and the log writer. After a crash the runner resumes exactly where the last
committed batch ended and catches up in the background (``/readyz`` shows the log and
view positions; a read that must include a write passes ``min_position``). Closing
drains the writer first (every accepted request is answered), then stops the runner.
"""

from __future__ import annotations

import structlog

from services.eventlog import TouchpointLog
from services.gc_tuning import tune_gc
from services.ingest import GroupCommitter
from services.runner import ProjectionRunner
from services.settings import Settings
from services.viewstore import ViewStore

__all__ = ["EmbeddedPlatform"]

log = structlog.get_logger("touchstream.platform")


class EmbeddedPlatform:
    runtime = "embedded"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.log = TouchpointLog(
            settings.log_path,
            lock_timeout_seconds=settings.sqlite_lock_timeout_seconds,
            max_bytes=settings.log_max_bytes,
        )
        self.views = ViewStore(settings.views_path, lock_timeout_seconds=settings.sqlite_lock_timeout_seconds)
        self.runner = ProjectionRunner(self.log, self.views, batch=settings.projection_batch_events)
        self.writer = GroupCommitter(
            self.log, max_events=settings.group_commit_max_events, on_commit=self.runner.notify
        )
        self.draining = False

    def start(self) -> None:
        tune_gc()
        self.runner.start()
        log.info("platform_started", runtime=self.runtime, log_position=self.log.head(),
                 view_position=self.runner.position)

    def close(self) -> None:
        self.draining = True
        self.writer.close()
        self.runner.stop()
        self.log.close()
        self.views.datastore.close()
        log.info("platform_stopped", view_position=self.runner.position)
