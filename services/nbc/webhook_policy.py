"""What a webhook answer means, and how long to wait before trying again (pure functions).

* 2xx: delivered.
* 408, 429 and 5xx, timeouts and connection errors: the receiver may take it later — retry.
* Every other status (4xx, and 3xx: redirects are not followed, configure the final URL):
  the receiver refuses this trigger — a permanent failure, retrying would not change it.

Backoff is exponential with "equal jitter": attempt ``n`` (1-based) waits a random time in
``[d/2, d]`` with ``d = min(cap, base * 2**(n-1))``, so concurrent senders spread out while
each wait is at least as long as the longest the previous attempt could have drawn. A
``Retry-After`` (seconds or an HTTP date) lengthens the wait, up to the cap: one receiver
cannot park a channel, whose deliveries wait behind it in order, for hours.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["RETRYABLE_STATUSES", "attempt_result", "is_retryable", "backoff_delay", "retry_after_seconds"]

RETRYABLE_STATUSES = frozenset({408, 429})


def attempt_result(status: int) -> str:
    """The ``result`` label of an answered attempt: ok, throttled, server_error, client_error."""
    if 200 <= status < 300:
        return "ok"
    if status in RETRYABLE_STATUSES:
        return "throttled"
    return "server_error" if status >= 500 else "client_error"


def is_retryable(result: str) -> bool:
    return result in ("throttled", "server_error", "timeout", "connection_error")


def backoff_delay(attempt: int, base: float, cap: float, jitter: float, retry_after: float | None = None) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based); ``jitter`` in [0, 1)."""
    ceiling = min(cap, base * 2.0 ** (attempt - 1))
    delay = ceiling / 2 + jitter * ceiling / 2
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """A ``Retry-After`` header in seconds from ``now`` (unix seconds); None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - now) if isinstance(moment, datetime) else None
