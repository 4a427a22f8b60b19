"""Money in the budget: integer micro-dollars, and the figures a budget day reports (pure)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

MICRO = 1_000_000


def to_micro(usd: float) -> int:
    return max(0, round(usd * MICRO))


def ceil_micro(usd: float) -> int:
    """Reservations round up: a worst case is never cut by rounding."""
    return max(0, math.ceil(usd * MICRO - 1e-6))


@dataclass(frozen=True)
class Reservation:
    job_id: str
    day: str
    worst_usd: float  # the job's own worst case, for callers checking what it settled


@dataclass(frozen=True)
class BudgetState:
    day: str
    spent_usd: float
    reserved_usd: float
    remaining_usd: float | None  # None: no limit
    limit_usd: float | None
    jobs: int = 0
    jobs_usd: float = 0.0  # spent on jobs
    overhead_usd: float = 0.0  # spent on the workers' boot, engine start and idle seconds
    boot_usd: float = 0.0
    engine_start_usd: float = 0.0
    idle_usd: float = 0.0
    stale: bool = False  # the store is unreachable: last known figures plus this worker's own

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
