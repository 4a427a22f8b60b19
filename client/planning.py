"""Cost planning, pure functions: the two tiers a month, self-hosted vs API, budget-safe workers, cheap-tier fit.

Every figure is USD. RunPod bills a serverless worker per second while it runs:
its jobs, its cold starts, and the idle seconds before it scales down. The two
tiers (core.prices): the cheap tier ("spot") is a flex-only endpoint, billed for
those seconds alone; the reliable tier ("on-demand") keeps active workers, each
billed every second of the month at the active rate, and runs what they cannot
hold as flex overflow. A table whose reliable tier keeps no active workers
(seed 004's) bills both tiers for the same seconds, each at its own rate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from core.prices import PriceTable, TierPair, TierPrice

DAYS_PER_MONTH = 30
DAY_S = 86_400.0
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
class TierCost:
    """One tier's month: `hours` its workers run at `hourly`, `active_hours` of always-on workers."""

    tier: str
    label: str
    pools: tuple[str, ...]
    priced_as: str
    hourly: float | None
    active_workers: int
    active_hourly: float | None
    hours: float
    active_hours: float
    monthly: float | None  # None: the table has no rate for this tier on this pool


def tier_cost(tier: TierPrice, hours: float, active_hours: float = 0.0) -> TierCost:
    priced = tier.hourly is not None and (not active_hours or tier.active_hourly is not None)
    monthly = round(hours * (tier.hourly or 0.0) + active_hours * (tier.active_hourly or 0.0), 2) if priced else None
    return TierCost(
        tier.tier, tier.label, tier.pools, tier.priced_as, tier.hourly, tier.active_workers, tier.active_hourly,
        round(hours, 4), round(active_hours, 4), monthly,
    )  # fmt: skip


def _saving(reliable: TierCost, cheap: TierCost) -> float | None:
    if reliable.monthly is None or cheap.monthly is None:
        return None
    return round(reliable.monthly - cheap.monthly, 2)


@dataclass(frozen=True)
class MonthlyEstimate:
    name: str  # the size class, or the pool both tiers use
    compute_hours: float
    cold_start_hours: float
    idle_hours: float
    total_hours: float  # the cheap tier's: jobs + cold starts + idle
    cheap: TierCost
    reliable: TierCost
    saving: float | None  # reliable - cheap: what the cheap tier saves a month

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def estimate_monthly(
    pair: TierPair,
    requests_per_day: float,
    seconds_per_request: float,
    *,
    cold_starts: float,
    cold_start_seconds: float = 45.0,
    idle_seconds_per_start: float = 0.0,
    days: int = DAYS_PER_MONTH,
) -> MonthlyEstimate:
    """Both tiers' month for the same traffic.

    cheap:    hours = days * (requests/day * s/request + cold starts/day * (cold start s + idle s)) / 3600
              at its flex rate. Jobs that run at once on one worker share its seconds: an upper bound for them.
    reliable: N active workers * 24 h * days at the active rate, warm (no cold starts), plus the job hours
              they cannot hold, one job at a time (max(0, job hours - N * 24 * days)), at the flex rate.
              Bursts beyond N workers start flex workers the estimate does not see (`estimate --trace` does).
              With no active workers (seed 004's tiers): the cheap tier's hours at its own rate.
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
    cheap = tier_cost(pair.cheap, total)
    active = pair.reliable.active_workers * 24 * days
    reliable = tier_cost(pair.reliable, max(0.0, compute - active) if active else total, active)
    return MonthlyEstimate(
        pair.name, round(compute, 4), round(cold, 4), round(idle, 4), round(total, 4),
        cheap, reliable, _saving(reliable, cheap),
    )  # fmt: skip


@dataclass(frozen=True)
class ApiComparison:
    monthly_input_tokens: float
    monthly_output_tokens: float
    self_hosted_monthly: dict[str, float]  # label (yours, or a tier) -> its bill
    self_hosted_per_million: dict[str, float]
    api_monthly: dict[str, float]
    savings: dict[str, dict[str, float]]  # API -> {label: API cost - that bill} (negative: the API is cheaper)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_with_apis(
    prices: PriceTable,
    monthly_requests: float,
    input_tokens_per_request: float,
    output_tokens_per_request: float,
    self_hosted_monthly: Mapping[str, float],
) -> ApiComparison:
    """What the same token volume costs on each API in the price table, beside each self-hosted bill."""
    tokens_in = monthly_requests * input_tokens_per_request
    tokens_out = monthly_requests * output_tokens_per_request
    millions = (tokens_in + tokens_out) / 1_000_000
    api = {a.name: round(a.cost(tokens_in, tokens_out), 2) for a in prices.apis}
    bills = {label: round(bill, 2) for label, bill in self_hosted_monthly.items()}
    per_million = {label: round(bill / millions, 4) if millions > 0 else 0.0 for label, bill in bills.items()}
    savings = {name: {label: round(cost - bill, 2) for label, bill in bills.items()} for name, cost in api.items()}
    return ApiComparison(tokens_in, tokens_out, bills, per_million, api, savings)


@dataclass(frozen=True)
class BudgetPlan:
    tier: str
    pools: tuple[str, ...]
    priced_as: str
    hourly_rate: float
    active_workers: int
    active_hourly: float | None
    monthly_budget: float
    daily_budget: float
    fixed_daily_spend: float  # the active workers, billed all day whatever they do
    max_worker_hours_per_day: float  # what the rest of the daily budget buys at `hourly_rate`
    utilization: float
    workers_max: int
    worst_case_daily_spend: float  # every worker busy 24 h
    expected_daily_spend: float  # flex workers at the assumed utilization
    guaranteed: bool  # worst case within the daily budget without relying on the budget guard
    note: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_budget(
    tier: TierPrice,
    monthly_budget: float,
    *,
    utilization: float = 0.5,
    days: int = DAYS_PER_MONTH,
    cap: int = 10,
) -> BudgetPlan:
    """The largest `workers_max` whose expected spend fits the daily share of a monthly budget.

    daily = monthly / days; fixed = active workers * 24 * active rate (billed whatever they do);
    worker-hours/day = (daily - fixed) / flex rate; flex workers = floor(worker-hours/day / (24 * utilization));
    workers_max = active workers + flex workers, at least 1 (and the active workers), at most `cap`.
    """
    if monthly_budget <= 0:
        raise ValueError(f"monthly budget must be > 0, got {monthly_budget}")
    if not 0 < utilization <= 1:
        raise ValueError(f"utilization must be in (0, 1], got {utilization}")
    if tier.hourly is None or (tier.active_workers and tier.active_hourly is None):
        raise ValueError(f"the {tier.tier} tier on {tier.priced_as} has no price in this table")
    rate, n = tier.hourly, tier.active_workers
    daily = monthly_budget / days
    fixed = n * 24 * (tier.active_hourly or 0.0)
    hours = max(0.0, daily - fixed) / rate
    fits = math.floor(hours / (24 * utilization) + 1e-9)
    workers = max(1, n, min(n + fits, cap))
    flex = workers - n
    worst = fixed + flex * 24 * rate
    expected = fixed + flex * 24 * utilization * rate
    guaranteed = worst <= daily + 1e-9
    if fixed > daily + 1e-9:
        note = (
            f"the {n} active worker(s) alone cost ${fixed:.2f} a day, past the daily budget of ${daily:.2f}: "
            "this budget cannot keep the reliable tier"
        )
    elif flex > 0 and fits == 0:
        note = (
            f"even one worker busy {utilization:.0%} of the day (${24 * utilization * rate:.2f}) exceeds the daily "
            f"budget: set DAILY_BUDGET_USD={daily:.2f} so the worker refuses work once it is spent"
        )
    elif guaranteed:
        note = "the budget covers every worker running all day"
    else:
        note = f"set DAILY_BUDGET_USD={daily:.2f}: more than {utilization:.0%} use would pass the daily budget"
    return BudgetPlan(
        tier.tier, tier.pools, tier.priced_as, rate, n, tier.active_hourly, monthly_budget, round(daily, 2),
        round(fixed, 2), round(hours, 2), utilization, workers, round(worst, 2), round(expected, 2), guaranteed, note,
    )  # fmt: skip


# ---------------------------------------------------------------- which traffic suits the cheap tier

# seed 004's use cases, as the traffic they describe: (latency tolerance s, batchable)
CHEAP_TIER_CASES: dict[str, tuple[float, bool]] = {
    "batch_processing": (3600.0, True),
    "embeddings_batch": (3600.0, True),
    "training": (86_400.0, True),
    "fine_tuning": (86_400.0, True),
    "development": (120.0, False),
    "production_api": (10.0, False),
    "real_time_inference": (2.0, False),
    "streaming_response": (2.0, False),  # the first piece must come soon
    "demo": (10.0, False),
}


@dataclass(frozen=True)
class Traffic:
    """What decides whether traffic suits the cheap tier (defaults: seed 004's light profile)."""

    requests_per_day: float = 100.0
    job_seconds: float = 5.0
    cold_start_seconds: float = 45.0
    latency_tolerance: float = 60.0  # seconds a caller can wait for an answer
    batchable: bool = False  # requests may be held and sent together, within the tolerance
    idle_seconds: float = 5.0  # the endpoint's idle timeout: billed after each start, warm meanwhile
    cold_starts: float | None = None  # per day; None: expected from the traffic

    def cold_starts_per_day(self) -> float:
        """Given, else: requests arriving at random find no warm worker with probability
        exp(-rate * (job s + idle s)); batched requests start at most once per tolerance window."""
        if self.cold_starts is not None:
            return min(self.cold_starts, self.requests_per_day)
        rate = self.requests_per_day / DAY_S
        starts = self.requests_per_day * math.exp(-rate * (self.job_seconds + self.idle_seconds))
        if self.batchable:
            starts = min(starts, max(1.0, DAY_S / max(self.latency_tolerance, 1.0)))
        return min(starts, self.requests_per_day)


@dataclass(frozen=True)
class TierSaving:
    estimate: MonthlyEstimate
    saving_percent: float | None  # of the reliable tier's bill
    cold_start_monthly: float | None  # what the cheap tier's cold starts and idle tails cost a month


@dataclass(frozen=True)
class CheapTierAdvice:
    use_case: str
    suits_cheap_tier: bool
    reasons: tuple[str, ...]
    cold_starts_per_day: float
    share_of_requests_cold: float  # requests that wait for a cold start
    worst_wait_s: float  # a cold start plus the job
    latency_tolerance_s: float
    tiers: tuple[TierSaving, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cheap_tier_advice(
    pairs: list[TierPair], traffic: Traffic, *, use_case: str = "custom", days: int = DAYS_PER_MONTH
) -> CheapTierAdvice:
    """Whether traffic suits the cheap tier, why, and what it saves over the reliable tier, net of its cold starts.

    Suits: a cold start plus the job fits the latency tolerance, and the cheap tier's month (jobs, cold starts,
    idle tails at flex) costs less than the reliable tier's (active workers around the clock, overflow at flex).
    """
    t = traffic
    starts = t.cold_starts_per_day()
    share = starts / t.requests_per_day if t.requests_per_day else 0.0
    wait = t.cold_start_seconds + t.job_seconds
    fits = wait <= t.latency_tolerance
    reasons = [
        f"a request that meets a cold worker waits {wait:g} s (cold start {t.cold_start_seconds:g} s + job "
        f"{t.job_seconds:g} s): {'within' if fits else 'past'} the {t.latency_tolerance:g} s a caller can wait"
        + ("" if fits else ": send it to the reliable tier"),
        "the cheapest pools fill first: a throttled cheap tier queues jobs, so keep the reliable tier as its "
        "fallback (client.fallback, whose start_timeout_s bounds that wait)",
    ]
    if t.batchable:
        reasons.append(f"batchable: held within the tolerance, requests share their cold starts ({starts:.1f} a day)")
    cold_s, billed_s = starts * (t.cold_start_seconds + t.idle_seconds), t.requests_per_day * t.job_seconds
    if share > 0.5 and t.cold_start_seconds > t.job_seconds:
        reasons.append(
            f"{share:.0%} of requests meet a cold worker whose start ({t.cold_start_seconds:g} s) is longer than "
            f"the job: cold starts and idle tails are {cold_s / (cold_s + billed_s):.0%} of the cheap tier's seconds"
            + ("" if t.batchable else "; batching requests would share them")
        )
    tiers, saves = [], True
    for pair in pairs:
        est = estimate_monthly(
            pair, t.requests_per_day, t.job_seconds, cold_starts=starts, cold_start_seconds=t.cold_start_seconds,
            idle_seconds_per_start=t.idle_seconds, days=days,
        )  # fmt: skip
        cheap, reliable = est.cheap, est.reliable
        if est.saving is None or cheap.monthly is None or reliable.monthly is None:
            reasons.append(f"{pair.name}: this price table has no price for one of its tiers")
            tiers.append(TierSaving(est, None, None))
            continue
        cold = round((est.cold_start_hours + est.idle_hours) * (cheap.hourly or 0.0), 2)
        percent = round(est.saving / reliable.monthly * 100, 1) if reliable.monthly else None
        tiers.append(TierSaving(est, percent, cold))
        if est.saving > 0:
            reasons.append(
                f"{pair.name}: the cheap tier costs ${cheap.monthly:,.2f} a month and the reliable tier "
                f"${reliable.monthly:,.2f}: it saves ${est.saving:,.2f} ({percent}%), net of the ${cold:,.2f} "
                "its cold starts and idle tails cost"
            )
        else:
            saves = False
            reasons.append(
                f"{pair.name}: the reliable tier costs less (${reliable.monthly:,.2f} against ${cheap.monthly:,.2f} "
                "a month): its active workers are busy enough to pay for being always on"
            )
    return CheapTierAdvice(use_case, fits and saves, tuple(reasons), round(starts, 2), round(share, 3), wait,
                           t.latency_tolerance, tuple(tiers))  # fmt: skip
