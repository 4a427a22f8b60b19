"""The budget's figures: a job's reservation and what a budget day reports (pure; the arithmetic
is `core.money`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


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
