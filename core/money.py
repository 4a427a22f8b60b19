"""Money arithmetic shared by the worker, the planner and the replay (pure).

RunPod bills a worker per second at an hourly rate; the budget keeps dollars as integer
micro-dollars so that concurrent additions in Redis stay exact.
"""

from __future__ import annotations

import math

MICRO = 1_000_000
SECONDS_PER_HOUR = 3600.0


def cost_usd(seconds: float, hourly_rate: float) -> float:
    """What `seconds` of one worker cost at `hourly_rate` USD per hour."""
    return seconds * hourly_rate / SECONDS_PER_HOUR


def to_micro(usd: float) -> int:
    return max(0, round(usd * MICRO))


def ceil_micro(usd: float) -> int:
    """Reservations round up: a worst case is never cut by rounding."""
    return max(0, math.ceil(usd * MICRO - 1e-6))
