"""The time-zone database the core decides in: the pinned ``tzdata`` package, loaded explicitly.

``zoneinfo.ZoneInfo(name)`` reads the host's database first (``/usr/share/zoneinfo``),
so quiet hours and business time would follow whatever the machine has installed, and a
replay on another machine could decide differently. ``PINNED`` reads only the ``tzdata``
package pinned in pyproject.toml; its version is part of the fold configuration's
fingerprint (``projections.batch.FoldConfig``).
"""

from __future__ import annotations

from datetime import tzinfo
from functools import lru_cache
from importlib import resources
from zoneinfo import ZoneInfo

import tzdata

__all__ = ["PinnedZones", "PINNED"]


class PinnedZones:
    """``projections.nbc.engine.TimeZones`` over the tzdata package."""

    version: str = f"tzdata {tzdata.IANA_VERSION}"

    @staticmethod
    @lru_cache(maxsize=512)
    def get(name: str) -> tzinfo | None:
        """The zone called ``name`` (IANA), or None when the database has no such zone."""
        parts = name.split("/")
        if not name or any(p in ("", ".", "..") or not p.replace("_", "").replace("-", "").replace("+", "").isalnum()
                            for p in parts):
            return None  # not a zone name: never a path outside the package
        try:
            with resources.files("tzdata.zoneinfo").joinpath(*parts).open("rb") as data:
                return ZoneInfo.from_file(data, key=name)
        except (OSError, ValueError):
            return None


PINNED = PinnedZones()
