"""CLI commands `estimate`, `compare`, `plan-budget`, `spot`: argument parsing and printing only.

Each shows the two tiers side by side: the cheap tier ("spot": flex-only, cheapest
adequate pool) and the reliable tier ("on-demand": active workers, broader pools).
`--gpu` names a size class (24GB) or a pool/GPU (both tiers on it).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from client.cli_projection import estimate_trace, register_trace_flags
from client.errors import ClientError
from client.planning import (
    CHEAP_TIER_CASES,
    BudgetPlan,
    MonthlyEstimate,
    TierCost,
    Traffic,
    cheap_tier_advice,
    cold_starts_per_day,
    compare_with_apis,
    estimate_monthly,
    plan_budget,
)
from core.prices import TIER_NAMES, TIER_WORDS, PriceTable, load_prices
from core.tables import as_json, pairs, table


def prices_of(args: argparse.Namespace) -> PriceTable:
    """`--prices FILE` or a packaged table's name (seed004), else the PRICE_TABLE variable, else RunPod's table."""
    return load_prices(args.prices or os.environ.get("PRICE_TABLE") or None)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prices", help="price table: a JSON file, or a packaged one by name (seed004) (also env PRICE_TABLE)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _money(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.2f}"


def _rate(cost: TierCost) -> str:
    rate = "n/a" if cost.hourly is None else f"{cost.hourly:g}"
    if cost.active_workers:
        return f"{cost.active_workers} active x {cost.active_hourly:g}, flex {rate}"
    return rate


def _where(cost: TierCost) -> str:
    return cost.priced_as if len(cost.pools) == 1 else f"{cost.priced_as} (of {', '.join(cost.pools)})"


def cmd_estimate(args: argparse.Namespace) -> int:
    prices = prices_of(args)
    if args.trace:
        return estimate_trace(args, prices)
    if args.requests_per_day is None or args.seconds_per_request is None:
        raise ClientError("estimate: give --requests-per-day and --seconds-per-request, or --trace FILE")
    starts = cold_starts_per_day(args.cold_starts)
    results = [
        estimate_monthly(
            pair,
            args.requests_per_day,
            args.seconds_per_request,
            cold_starts=starts,
            cold_start_seconds=args.cold_start_seconds,
            idle_seconds_per_start=args.idle_seconds,
            days=args.days,
        )
        for pair in prices.pairs(args.gpu, active_workers=args.active_workers)
    ]
    if args.json:
        print(as_json([r.to_dict() for r in results]))
        return 0
    print(
        f"{args.requests_per_day:g} requests/day x {args.seconds_per_request:g} s, {starts:g} cold starts/day x "
        f"{args.cold_start_seconds:g} s (+{args.idle_seconds:g} s idle), {args.days} days; price table "
        f"{prices.name!r}"
    )
    print(_tier_table(results))
    _legend(prices)
    return 0


def _tier_table(results: list[MonthlyEstimate]) -> str:
    rows = [
        (
            r.name,
            _where(r.cheap),
            r.cheap.hours,
            _rate(r.cheap),
            _money(r.cheap.monthly),
            _where(r.reliable),
            r.reliable.active_hours + r.reliable.hours,
            _rate(r.reliable),
            _money(r.reliable.monthly),
            _money(r.saving),
        )
        for r in results
    ]
    head = ["size", "cheap: pool", "h/month", "$/h", "$/month", "reliable: pool", "h/month", "$/h", "$/month", "saves"]
    return table(head, rows)


def _legend(prices: PriceTable) -> None:
    print(f"cheap tier (spot): {prices.cheap_tier.label}")
    print(f"reliable tier (on-demand): {prices.reliable_tier.label}")


def cmd_compare(args: argparse.Namespace) -> int:
    prices = prices_of(args)
    if args.self_hosted_monthly is not None:
        bills = {"yours": args.self_hosted_monthly}
    else:
        est = estimate_monthly(
            prices.pair(args.gpu, active_workers=args.active_workers),
            args.monthly_requests / args.days,
            args.seconds_per_request,
            cold_starts=cold_starts_per_day(args.cold_starts),
            days=args.days,
        )
        bills = {t: c.monthly for t, c in (("cheap", est.cheap), ("reliable", est.reliable)) if c.monthly is not None}
    result = compare_with_apis(prices, args.monthly_requests, args.input_tokens, args.output_tokens, bills)
    if args.json:
        print(as_json(result.to_dict()))
        return 0
    print(
        f"{result.monthly_input_tokens:,.0f} input + {result.monthly_output_tokens:,.0f} output tokens a month; "
        + "; ".join(
            f"self-hosted ({label}) ${bill:,.2f} (${result.self_hosted_per_million[label]:g} per million tokens)"
            for label, bill in result.self_hosted_monthly.items()
        )
    )
    labels = list(result.self_hosted_monthly)
    rows = [
        (name, cost, *(result.savings[name][label] for label in labels)) for name, cost in result.api_monthly.items()
    ]
    print(table(["API", "$/month", *(f"{label} saves $/month" for label in labels)], rows))
    return 0


def cmd_plan_budget(args: argparse.Namespace) -> int:
    prices = prices_of(args)
    pair = prices.pair(args.gpu, active_workers=args.active_workers)
    tiers = [TIER_WORDS[args.tier]] if args.tier else list(TIER_NAMES)
    plans = {
        t: plan_budget(
            pair.cheap if t == "cheap" else pair.reliable,
            args.monthly_budget,
            utilization=args.utilization,
            days=args.days,
            cap=args.cap,
        )
        for t in tiers
    }
    if args.json:
        print(as_json({t: p.to_dict() for t, p in plans.items()}))
        return 0
    fields: list[tuple[str, Callable[[BudgetPlan], object]]] = [
        ("pool", lambda p: f"{p.priced_as} (${p.hourly_rate:g}/h)"),
        ("active workers (always billed)", lambda p: f"{p.active_workers} x ${p.active_hourly or 0:g}/h"),
        ("daily budget (DAILY_BUDGET_USD)", lambda p: p.daily_budget),
        ("fixed daily spend (active)", lambda p: p.fixed_daily_spend),
        ("flex worker-hours a day", lambda p: p.max_worker_hours_per_day),
        ("workers_max", lambda p: p.workers_max),
        ("expected daily spend", lambda p: p.expected_daily_spend),
        ("worst-case daily spend", lambda p: p.worst_case_daily_spend),
        ("within budget at worst", lambda p: p.guaranteed),
    ]
    print(f"{pair.name}: ${args.monthly_budget:g} a month, utilization {args.utilization:g}")
    print(
        table(["", *(f"{t} tier" for t in plans)], [(name, *(get(p) for p in plans.values())) for name, get in fields])
    )
    for t, p in plans.items():
        print(f"{t}: {p.note}")
    return 0


def cmd_spot(args: argparse.Namespace) -> int:
    prices = prices_of(args)
    name = args.use_case or "custom"
    if args.use_case is not None and args.use_case not in CHEAP_TIER_CASES and args.latency_tolerance is None:
        raise ValueError(
            f"unknown use case {args.use_case!r}; known: {sorted(CHEAP_TIER_CASES)} (or describe it with "
            "--latency-tolerance and --batchable)"
        )
    tolerance, batchable = CHEAP_TIER_CASES.get(name, (60.0, False))
    traffic = Traffic(
        requests_per_day=args.requests_per_day,
        job_seconds=args.job_seconds,
        cold_start_seconds=args.cold_start_seconds,
        latency_tolerance=tolerance if args.latency_tolerance is None else args.latency_tolerance,
        batchable=batchable if args.batchable is None else args.batchable,
        idle_seconds=args.idle_seconds,
        cold_starts=None if args.cold_starts is None else cold_starts_per_day(args.cold_starts),
    )
    pairs_ = prices.pairs(args.gpu or ["24GB"], active_workers=args.active_workers)
    advice = cheap_tier_advice(pairs_, traffic, use_case=name, days=args.days)
    if args.json:
        print(as_json(advice.to_dict()))
        return 0
    print(
        pairs(
            [
                ("use case", advice.use_case),
                ("suits the cheap tier (spot)", advice.suits_cheap_tier),
                ("cold starts a day", advice.cold_starts_per_day),
                ("requests that wait for one", f"{advice.share_of_requests_cold:.0%}"),
                ("worst wait, s", advice.worst_wait_s),
            ]
        )
    )
    print("why:\n" + "\n".join(f"  - {reason}" for reason in advice.reasons))
    print(_tier_table([s.estimate for s in advice.tiers]))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gpu_help = "a size class (24GB) or a pool/GPU (both tiers on it); repeatable"
    active_help = "the reliable tier's active workers (default: the price table's)"
    p = sub.add_parser("estimate", help="monthly serverless cost: the cheap tier and the reliable tier side by side")
    p.add_argument("--gpu", action="append", help=gpu_help + " (default: every size class)")
    p.add_argument("--requests-per-day", type=float)
    p.add_argument("--seconds-per-request", type=float)
    p.add_argument("--cold-starts", default="hourly", help="per day: a number, or hourly (24), daily (1), rarely (0.1)")
    p.add_argument("--cold-start-seconds", type=float, default=45.0)
    p.add_argument(
        "--idle-seconds", type=float, default=0.0, help="billed idle seconds after each start (idle_timeout)"
    )
    p.add_argument("--active-workers", type=int, help=active_help)
    p.add_argument("--days", type=int, default=30)
    _common(p)
    register_trace_flags(p)
    p.set_defaults(func=cmd_estimate)

    p = sub.add_parser("compare", help="self-hosted (each tier) vs API cost for a token volume")
    p.add_argument("--monthly-requests", type=float, required=True)
    p.add_argument("--input-tokens", type=float, required=True, help="input tokens per request")
    p.add_argument("--output-tokens", type=float, required=True, help="output tokens per request")
    p.add_argument("--self-hosted-monthly", type=float, help="your self-hosted bill; else both tiers from --gpu")
    p.add_argument("--gpu", default="24GB", help="a size class (24GB) or a pool/GPU")
    p.add_argument("--seconds-per-request", type=float, default=2.0)
    p.add_argument("--cold-starts", default="hourly")
    p.add_argument("--active-workers", type=int, help=active_help)
    p.add_argument("--days", type=int, default=30)
    _common(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("plan-budget", help="safe workers_max and daily budget for a monthly budget, per tier")
    p.add_argument("--monthly-budget", type=float, required=True)
    p.add_argument("--gpu", required=True, help="a size class (24GB) or a pool/GPU")
    p.add_argument("--tier", choices=sorted(TIER_WORDS), help="one tier only (spot = cheap, on_demand = reliable)")
    p.add_argument("--active-workers", type=int, help=active_help)
    p.add_argument("--utilization", type=float, default=0.5, help="share of the day a flex worker is busy (0-1]")
    p.add_argument("--cap", type=int, default=10, help="largest workers_max to suggest")
    p.add_argument("--days", type=int, default=30)
    _common(p)
    p.set_defaults(func=cmd_plan_budget)

    p = sub.add_parser("spot", help="whether traffic suits the cheap tier (spot), why, and what it saves")
    p.add_argument(
        "use_case", nargs="?", help=f"one of {', '.join(sorted(CHEAP_TIER_CASES))}, or describe it with flags"
    )
    p.add_argument("--latency-tolerance", type=float, help="seconds a caller can wait for an answer (default 60)")
    p.add_argument(
        "--batchable", action=argparse.BooleanOptionalAction, default=None, help="requests may wait and go together"
    )
    p.add_argument("--requests-per-day", type=float, default=100.0)
    p.add_argument("--job-seconds", type=float, default=5.0, help="one job's seconds on a warm worker")
    p.add_argument("--cold-start-seconds", type=float, default=45.0)
    p.add_argument("--cold-starts", help="per day (a number or hourly, daily, rarely); default: from the traffic")
    p.add_argument("--idle-seconds", type=float, default=5.0, help="the endpoint's idle timeout")
    p.add_argument("--gpu", action="append", help=gpu_help + " (default: 24GB)")
    p.add_argument("--active-workers", type=int, help=active_help)
    p.add_argument("--days", type=int, default=30)
    _common(p)
    p.set_defaults(func=cmd_spot)
