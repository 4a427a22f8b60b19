"""CLI commands `estimate`, `compare`, `plan-budget`, `spot`: argument parsing and printing only."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from client.cli_projection import estimate_trace, register_trace_flags
from client.errors import ClientError
from client.planning import (
    SPOT_CASES,
    cold_starts_per_day,
    compare_with_apis,
    estimate_monthly,
    plan_budget,
    spot_advice,
)
from core.prices import PriceTable, load_prices
from core.tables import as_json, pairs, table


def prices_of(args: argparse.Namespace) -> PriceTable:
    """`--prices FILE`, else the PRICE_TABLE variable, else the packaged table."""
    path = args.prices or os.environ.get("PRICE_TABLE") or None
    return load_prices(Path(path) if path else None)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prices", help="price table JSON overriding the packaged one (also env PRICE_TABLE)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def cmd_estimate(args: argparse.Namespace) -> int:
    prices = prices_of(args)
    if args.trace:
        return estimate_trace(args, prices)
    if args.requests_per_day is None or args.seconds_per_request is None:
        raise ClientError("estimate: give --requests-per-day and --seconds-per-request, or --trace FILE")
    gpus = [prices.gpu(name) for name in args.gpu] if args.gpu else list(prices.by_vram())
    starts = cold_starts_per_day(args.cold_starts)
    results = [
        estimate_monthly(
            g,
            args.requests_per_day,
            args.seconds_per_request,
            cold_starts=starts,
            cold_start_seconds=args.cold_start_seconds,
            idle_seconds_per_start=args.idle_seconds,
            days=args.days,
        )
        for g in gpus
    ]
    if args.json:
        print(as_json([r.to_dict() for r in results]))
        return 0
    print(
        f"{args.requests_per_day:g} requests/day x {args.seconds_per_request:g} s, {starts:g} cold starts/day x "
        f"{args.cold_start_seconds:g} s (+{args.idle_seconds:g} s idle), {args.days} days"
    )
    rows = [
        (
            r.gpu,
            r.total_hours,
            r.on_demand_hourly,
            r.on_demand_monthly,
            f"{r.spot_hourly:g}{'*' if r.spot_estimated else ''}",
            r.spot_monthly,
        )
        for r in results
    ]
    print(table(["GPU", "hours/month", "$/h on-demand", "$/month on-demand", "$/h spot", "$/month spot"], rows))
    if any(r.spot_estimated for r in results):
        print(f"* spot rate estimated as {1 - prices.default_spot_discount:.0%} of on-demand (no published figure)")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    prices = prices_of(args)
    if args.self_hosted_monthly is not None:
        self_hosted = args.self_hosted_monthly
    else:
        est = estimate_monthly(
            prices.gpu(args.gpu),
            args.monthly_requests / args.days,
            args.seconds_per_request,
            cold_starts=cold_starts_per_day(args.cold_starts),
            days=args.days,
        )
        self_hosted = est.spot_monthly if args.spot else est.on_demand_monthly
    result = compare_with_apis(prices, args.monthly_requests, args.input_tokens, args.output_tokens, self_hosted)
    if args.json:
        print(as_json(result.to_dict()))
        return 0
    print(
        f"{result.monthly_input_tokens:,.0f} input + {result.monthly_output_tokens:,.0f} output tokens a month; "
        f"self-hosted ${result.self_hosted_monthly:,.2f} (${result.self_hosted_per_million:g} per million tokens)"
    )
    rows = [(name, cost, result.savings[name]) for name, cost in result.api_monthly.items()]
    print(table(["API", "$/month", "self-hosted saves $/month"], rows))
    return 0


def cmd_plan_budget(args: argparse.Namespace) -> int:
    prices = prices_of(args)
    plan = plan_budget(
        prices.gpu(args.gpu),
        args.monthly_budget,
        tier=args.tier,
        utilization=args.utilization,
        days=args.days,
        cap=args.cap,
    )
    if args.json:
        print(as_json(plan.to_dict()))
        return 0
    print(
        pairs(
            [
                ("GPU", f"{plan.gpu} ({plan.tier}, ${plan.hourly_rate:g}/h)"),
                ("monthly budget", plan.monthly_budget),
                ("daily budget (DAILY_BUDGET_USD)", plan.daily_budget),
                ("worker-hours a day", plan.max_worker_hours_per_day),
                ("assumed utilization", plan.utilization),
                ("workers_max", plan.workers_max),
                ("expected daily spend", plan.expected_daily_spend),
                ("worst-case daily spend", plan.worst_case_daily_spend),
                ("within budget at worst", plan.guaranteed),
                ("note", plan.note),
            ]
        )
    )
    return 0


def cmd_spot(args: argparse.Namespace) -> int:
    prices = prices_of(args)
    advice = spot_advice(
        args.use_case,
        interruptible=args.interruptible,
        latency_sensitive=args.latency_sensitive,
        streaming=args.streaming,
        gpu=prices.gpu(args.gpu) if args.gpu else None,
    )
    if args.json:
        print(as_json(advice.to_dict()))
        return 0
    rows: list[tuple[str, object]] = [
        ("use case", advice.use_case),
        ("suits spot", advice.suits_spot),
        ("why", advice.reason),
    ]
    if advice.gpu:
        rows += [
            ("GPU", advice.gpu),
            ("on-demand $/h", advice.on_demand_hourly),
            ("spot $/h", advice.spot_hourly),
            ("spot saves", f"{advice.saving_percent}%"),
        ]
    print(pairs(rows))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("estimate", help="monthly serverless cost, on-demand and spot side by side")
    p.add_argument("--gpu", action="append", help="GPU id or short name (repeatable; default: every GPU)")
    p.add_argument("--requests-per-day", type=float)
    p.add_argument("--seconds-per-request", type=float)
    p.add_argument("--cold-starts", default="hourly", help="per day: a number, or hourly (24), daily (1), rarely (0.1)")
    p.add_argument("--cold-start-seconds", type=float, default=45.0)
    p.add_argument(
        "--idle-seconds", type=float, default=0.0, help="billed idle seconds after each start (idle_timeout)"
    )
    p.add_argument("--days", type=int, default=30)
    _common(p)
    register_trace_flags(p)
    p.set_defaults(func=cmd_estimate)

    p = sub.add_parser("compare", help="self-hosted vs API cost for a token volume")
    p.add_argument("--monthly-requests", type=float, required=True)
    p.add_argument("--input-tokens", type=float, required=True, help="input tokens per request")
    p.add_argument("--output-tokens", type=float, required=True, help="output tokens per request")
    p.add_argument("--self-hosted-monthly", type=float, help="your self-hosted bill; else estimated from --gpu")
    p.add_argument("--gpu", default="RTX_4090")
    p.add_argument("--seconds-per-request", type=float, default=2.0)
    p.add_argument("--cold-starts", default="hourly")
    p.add_argument("--spot", action="store_true", help="estimate the self-hosted bill at the spot rate")
    p.add_argument("--days", type=int, default=30)
    _common(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("plan-budget", help="safe workers_max and daily budget for a monthly budget")
    p.add_argument("--monthly-budget", type=float, required=True)
    p.add_argument("--gpu", required=True)
    p.add_argument("--tier", choices=["on_demand", "spot"], default="on_demand")
    p.add_argument("--utilization", type=float, default=0.5, help="share of the day a worker is busy (0-1]")
    p.add_argument("--cap", type=int, default=10, help="largest workers_max to suggest")
    p.add_argument("--days", type=int, default=30)
    _common(p)
    p.set_defaults(func=cmd_plan_budget)

    p = sub.add_parser("spot", help="whether a use case suits spot, and why")
    p.add_argument("use_case", nargs="?", help=f"one of {', '.join(sorted(SPOT_CASES))}, or describe it with flags")
    p.add_argument("--interruptible", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--latency-sensitive", action="store_true")
    p.add_argument("--streaming", action="store_true")
    p.add_argument("--gpu", help="show this GPU's on-demand and spot rates")
    _common(p)
    p.set_defaults(func=cmd_spot)
