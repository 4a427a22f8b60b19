"""Budget days: the calendar day of a timestamp in BUDGET_TIMEZONE (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from handler.errors import ConfigError


def zone(name: str) -> tzinfo:
    """The time zone called `name` (UTC needs no time zone database)."""
    if name.strip().upper() in ("UTC", "Z", "ETC/UTC"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"BUDGET_TIMEZONE: unknown time zone {name!r}", field="BUDGET_TIMEZONE") from exc


def day_of(timestamp: float, tz: tzinfo) -> str:
    """``YYYY-MM-DD`` of the Unix `timestamp` in `tz`."""
    return datetime.fromtimestamp(timestamp, tz).date().isoformat()


def recent_days(timestamp: float, tz: tzinfo, count: int) -> list[str]:
    """The last `count` days up to and including today, oldest first."""
    today = datetime.fromtimestamp(timestamp, tz).date()
    return [(today - timedelta(days=back)).isoformat() for back in range(count - 1, -1, -1)]
