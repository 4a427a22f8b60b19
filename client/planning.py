"""Cost planning, pure functions: monthly estimate, self-hosted vs API, budget-safe workers, spot fit.

Every figure is USD. A serverless worker is billed per second while it runs:
its jobs, its cold starts, and the idle seconds before it scales down.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from core.prices import GpuPrice, PriceTable

DAYS_PER_MONTH = 30
COLD_STARTS_PER_DAY = {"hourly": 24.0, "daily": 1.0, "rarely": 0.1}  # seed 004's presets


def cold_starts_per_day(value: str | float) -> float:
    """A preset name (hourly, daily, rarely) or a number of cold starts per day."""
    if isinstance(value, str):
        if value in COLD_STARTS_PER_DAY:
            return COLD_STARTS_PER_DAY[value]
        try:
            value = float(value)
        except ValueError:
            raise ValueError(
                f"cold-start frequency {value!r}: give a number per day or one of {sorted(COLD_STARTS_PER_DAY)}"
            ) from None
    if value < 0:
        raise ValueError(f"cold starts per day must be >= 0, got {value}")
    return float(value)


@dataclass(frozen=True)
class MonthlyEstimate:
    gpu: str
    on_demand_hourly: float
    spot_hourly: float
    spot_estimated: bool
    compute_hours: float
    cold_start_hours: float
    idle_hours: float
    total_hours: float
    on_demand_monthly: float
    spot_monthly: float
    spot_saving: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def estimate_monthly(
    gpu: GpuPrice,
    requests_per_day: float,
    seconds_per_request: float,
    *,
    cold_starts: float,
    cold_start_seconds: float = 45.0,
    idle_seconds_per_start: float = 0.0,
    days: int = DAYS_PER_MONTH,
) -> MonthlyEstimate:
    """Worker-hours a month and what they cost on-demand and on spot.

    hours = days * (requests/day * s/request + cold starts/day * (cold start s + idle s)) / 3600.
    Jobs that run concurrently on one worker share its seconds, so this is an upper bound for them.
    """
    checks = {
        "requests_per_day": requests_per_day,
        "seconds_per_request": seconds_per_request,
        "cold_start_seconds": cold_start_seconds,
        "idle_seconds_per_start": idle_seconds_per_start,
    }
    for name, value in checks.items():
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    compute = days * requests_per_day * seconds_per_request / 3600
    cold = days * cold_starts * cold_start_seconds / 3600
    idle = days * cold_starts * idle_seconds_per_start / 3600
    total = compute + cold + idle
    od, spot = total * gpu.on_demand_hourly, total * gpu.hourly("spot")
    return MonthlyEstimate(
        gpu.id,
        gpu.on_demand_hourly,
        gpu.hourly("spot"),
        gpu.spot_estimated,
        round(compute, 4),
        round(cold, 4),
        round(idle, 4),
        round(total, 4),
        round(od, 2),
        round(spot, 2),
        round(od - spot, 2),
    )


@dataclass(frozen=True)
class ApiComparison:
    monthly_input_tokens: float
    monthly_output_tokens: float
    self_hosted_monthly: float
    self_hosted_per_million: float
    api_monthly: dict[str, float]
    savings: dict[str, float]  # API cost - self-hosted cost (negative: the API is cheaper)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_with_apis(
    prices: PriceTable,
    monthly_requests: float,
    input_tokens_per_request: float,
    output_tokens_per_request: float,
    self_hosted_monthly: float,
) -> ApiComparison:
    """What the same token volume costs on each API in the price table, beside the self-hosted bill."""
    tokens_in = monthly_requests * input_tokens_per_request
    tokens_out = monthly_requests * output_tokens_per_request
    millions = (tokens_in + tokens_out) / 1_000_000
    api = {a.name: round(a.cost(tokens_in, tokens_out), 2) for a in prices.apis}
    per_million = self_hosted_monthly / millions if millions > 0 else 0.0
    savings = {name: round(cost - self_hosted_monthly, 2) for name, cost in api.items()}
    return ApiComparison(tokens_in, tokens_out, round(self_hosted_monthly, 2), round(per_million, 4), api, savings)


@dataclass(frozen=True)
class BudgetPlan:
    gpu: str
    tier: str
    hourly_rate: float
    monthly_budget: float
    daily_budget: float
    max_worker_hours_per_day: float
    utilization: float
    workers_max: int
    worst_case_daily_spend: float  # every worker busy 24 h
    expected_daily_spend: float  # at the assumed utilization
    guaranteed: bool  # worst case within the daily budget without relying on the budget guard
    note: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_budget(
    gpu: GpuPrice,
    monthly_budget: float,
    *,
    tier: str = "on_demand",
    utilization: float = 0.5,
    days: int = DAYS_PER_MONTH,
    cap: int = 10,
) -> BudgetPlan:
    """The largest `workers_max` whose expected spend fits the daily share of a monthly budget.

    daily = monthly / days; worker-hours/day = daily / rate;
    workers_max = floor(worker-hours/day / (24 * utilization)), at least 1, at most `cap`.
    """
    if monthly_budget <= 0:
        raise ValueError(f"monthly budget must be > 0, got {monthly_budget}")
    if not 0 < utilization <= 1:
        raise ValueError(f"utilization must be in (0, 1], got {utilization}")
    rate = gpu.hourly("spot" if tier == "spot" else "on_demand")
    daily = monthly_budget / days
    hours = daily / rate
    fits = math.floor(hours / (24 * utilization) + 1e-9)
    workers = max(1, min(fits, cap))
    worst = workers * 24 * rate
    expected = workers * 24 * utilization * rate
    guaranteed = worst <= daily + 1e-9
    if fits == 0:
        note = (
            f"even one worker busy {utilization:.0%} of the day (${24 * utilization * rate:.2f}) exceeds the daily "
            f"budget: set DAILY_BUDGET_USD={daily:.2f} so the worker refuses work once it is spent"
        )
    elif guaranteed:
        note = "the budget covers every worker running all day"
    else:
        note = f"set DAILY_BUDGET_USD={daily:.2f}: more than {utilization:.0%} use would pass the daily budget"
    return BudgetPlan(
        gpu.id,
        tier,
        rate,
        monthly_budget,
        round(daily, 2),
        round(hours, 2),
        utilization,
        workers,
        round(worst, 2),
        round(expected, 2),
        guaranteed,
        note,
    )


SPOT_CASES: dict[str, tuple[bool, str]] = {
    "training": (True, "training can checkpoint and resume after an interruption"),
    "batch_processing": (True, "batch jobs are interruptible and can be retried"),
    "development": (True, "development work does not need guaranteed uptime"),
    "fine_tuning": (True, "fine-tuning can checkpoint and resume"),
    "embeddings_batch": (True, "batch embeddings can be retried"),
    "production_api": (
        False,
        "user-facing requests need reliability: use spot only with on-demand fallback "
        "(client.fallback), accepting a slower answer when spot is preempted",
    ),
    "real_time_inference": (False, "an interruption fails the request inside its latency budget"),
    "streaming_response": (False, "a stream cannot resume mid-answer on another worker"),
    "demo": (False, "demos should be reliable"),
}


@dataclass(frozen=True)
class SpotAdvice:
    use_case: str
    suits_spot: bool
    reason: str
    gpu: str | None = None
    on_demand_hourly: float | None = None
    spot_hourly: float | None = None
    saving_percent: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def spot_advice(
    use_case: str | None = None,
    *,
    interruptible: bool | None = None,
    latency_sensitive: bool = False,
    streaming: bool = False,
    gpu: GpuPrice | None = None,
) -> SpotAdvice:
    """Whether a use case suits spot, and why: a known case by name, or described by its traits."""
    if use_case is not None and use_case in SPOT_CASES:
        suits, reason = SPOT_CASES[use_case]
    elif use_case is not None and interruptible is None:
        raise ValueError(
            f"unknown use case {use_case!r}; known: {sorted(SPOT_CASES)} (or describe it with "
            "--interruptible/--not-interruptible, --latency-sensitive, --streaming)"
        )
    elif streaming:
        suits, reason = False, "a stream cannot resume mid-answer on another worker"
    elif latency_sensitive:
        suits, reason = False, "a preemption costs a retry on on-demand, which a latency budget may not allow"
    elif interruptible:
        suits, reason = True, "interruptible work can be retried after a preemption"
    else:
        suits, reason = False, "work that cannot be interrupted or retried should not run on spot"
    if gpu is None:
        return SpotAdvice(use_case or "custom", suits, reason)
    od, spot = gpu.on_demand_hourly, gpu.hourly("spot")
    estimated = " (spot rate estimated)" if gpu.spot_estimated else ""
    saving = round((1 - spot / od) * 100, 1)
    return SpotAdvice(use_case or "custom", suits, reason + estimated, gpu.id, od, spot, saving)
