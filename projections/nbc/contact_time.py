"""Contact time: durations, business hours and quiet hours as rules state them.

**Durations** are strict: a positive whole number and a unit with no space, ``90m``,
``36h``, ``3d``, ``2w``; or business time, ``1 business hour`` / ``4 business hours``.
Nothing else (no ``1.5h``, ``3 d``, ``3D``, ``0d``): a rule file is read by people, and a
duration that could be read two ways is an error.

**Business hours** are a weekly calendar in the customer's time zone: the days given
(default Monday to Friday) from ``start`` to ``end`` (default 09:00 to 18:00), wall-clock
time, no public holidays. ``N business hours`` after an instant counts only time inside
that calendar: a web form sent Friday 17:30 with "1 business hour" is due Monday 09:30;
one sent Saturday is due Monday 10:00. A day is not a business unit: 9 business hours
is the stated way to say "one working day".

**Quiet hours** (``start``, ``end`` local wall-clock, crossing midnight when start > end)
say when no contact is made; the rule's ``mode`` says what happens to a contact that
falls in them: ``defer`` (to the end of the quiet period) or ``drop``.

Everything here works on timezone-aware datetimes the caller has already put in the
customer's zone; nothing reads a clock or the time-zone database.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from typing import Any, NamedTuple

from projections.predicates.errors import Path, RuleError, describe

__all__ = ["Duration", "BusinessHours", "QuietHours", "WEEKDAYS", "DEFAULT_BUSINESS_HOURS", "parse_duration",
           "parse_clock_time", "due_at"]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CALENDAR = re.compile(r"([1-9][0-9]*)([mhdw])\Z")
_BUSINESS = re.compile(r"([1-9][0-9]*) business hours?\Z")
_UNIT = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
_CLOCK = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])\Z")


class Duration(NamedTuple):
    """``text`` as written; ``business_hours`` set for business time, else ``span``."""

    text: str
    span: timedelta | None
    business_hours: int | None = None

    @property
    def is_business(self) -> bool:
        return self.business_hours is not None


def parse_duration(value: Any, path: Path, business: bool = True) -> Duration:
    """A duration as the module docstring states, or ``RuleError`` at ``path``.
    ``business=False`` where only calendar time makes sense (cooldowns, cap windows)."""
    text = value if isinstance(value, str) else None
    calendar = _CALENDAR.match(text) if text is not None else None
    if calendar:
        return Duration(text, int(calendar.group(1)) * _UNIT[calendar.group(2)])  # type: ignore[arg-type]
    hours = _BUSINESS.match(text) if text is not None else None
    if hours and business:
        return Duration(text, None, int(hours.group(1)))  # type: ignore[arg-type]
    if hours:
        raise RuleError(f"business time means nothing here, expected calendar time such as 30d, got {text!r}", path)
    forms = "90m, 36h, 3d, 2w" + (" or 1 business hour" if business else "")
    raise RuleError(f"expected a duration ({forms}), got {describe(value)}", path)


def parse_clock_time(value: Any, path: Path) -> time:
    """``"HH:MM"`` (24 h). YAML reads an unquoted 21:00 as the number 1260: say so."""
    match = _CLOCK.match(value) if isinstance(value, str) else None
    if match:
        return time(int(match.group(1)), int(match.group(2)))
    hint = " (quote it: YAML reads an unquoted 21:00 as a number)" if isinstance(value, int) else ""
    raise RuleError(f"expected a time of day \"HH:MM\", got {describe(value)}{hint}", path)


class BusinessHours(NamedTuple):
    days: frozenset[int] = frozenset(range(5))  # Monday = 0
    start: time = time(9)
    end: time = time(18)

    def add(self, moment: datetime, hours: int) -> datetime:
        """The instant ``hours`` business hours after ``moment`` (in ``moment``'s zone)."""
        remaining = timedelta(hours=hours)
        cursor = moment
        while True:
            opening, closing = self._open_at(cursor.date(), cursor)
            if cursor < opening:
                cursor = opening
            if cursor < closing:
                if remaining <= closing - cursor:
                    return cursor + remaining
                remaining -= closing - cursor
            cursor = datetime.combine(cursor.date() + timedelta(days=1), time(0), cursor.tzinfo)

    def _open_at(self, day: date, like: datetime) -> tuple[datetime, datetime]:
        if day.weekday() not in self.days:
            closed = datetime.combine(day, time(0), like.tzinfo)
            return closed, closed
        return datetime.combine(day, self.start, like.tzinfo), datetime.combine(day, self.end, like.tzinfo)


DEFAULT_BUSINESS_HOURS = BusinessHours()


def due_at(moment: datetime, duration: Duration, hours: BusinessHours = DEFAULT_BUSINESS_HOURS) -> datetime:
    """``moment`` plus ``duration``: calendar time as is, business time through ``hours``."""
    if duration.business_hours is not None:
        return hours.add(moment, duration.business_hours)
    assert duration.span is not None
    return moment + duration.span


class QuietHours(NamedTuple):
    start: time
    end: time
    mode: str  # defer | drop

    def contains(self, local: time) -> bool:
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # across midnight

    def ends_after(self, moment: datetime) -> datetime:
        """When the quiet period holding ``moment`` ends (``moment`` itself if none does)."""
        if not self.contains(moment.time()):
            return moment
        day = moment.date() if moment.time() < self.end else moment.date() + timedelta(days=1)
        return datetime.combine(day, self.end, moment.tzinfo)
