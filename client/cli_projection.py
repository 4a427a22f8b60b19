"""`python -m client estimate --trace FILE`: a month of a trace's traffic, simulated, on both tiers.

    python -m client estimate --trace replay-out/trace.jsonl --measured replay-out/summary.json
    python -m client estimate --trace my.jsonl --engine-start-seconds 120 --tokens-per-second 60 \\
        --gpu RTX_4090 --gpu A100_80GB

The worker model's timings come from a replay's summary (`--measured`, the
configuration named by `--config`, default frugal) or from flags; flags win.
The cheap tier runs it flex-only; the reliable tier keeps `--active-workers`
(default: the price table's) warm all month (see `estimate_trace`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import orjson

from client.errors import TraceError
from client.replay.projection import DAY_S, Projection, WorkerModel, project_month, trace_days_of
from client.replay.trace import load_trace
from core.money import cost_usd
from core.prices import PriceTable, TierPrice
from core.tables import as_json, table

# flag -> WorkerModel field: the timings and the settings a user may give
MEASURED_FLAGS = {
    "boot_seconds": "boot_s",
    "engine_start_seconds": "engine_start_s",
    "tokens_per_second": "tokens_per_second",
    "hit_seconds": "hit_s",
    "start_contention": "start_contention",
}
SETTING_FLAGS = {
    "idle_timeout": "idle_timeout",
    "workers_max": "workers_max",
    "scaler": "scaler",
    "scaler_value": "scaler_value",
    "engine_start": "engine_start",
    "concurrency": "concurrency",
    "cold_concurrency": "cold_concurrency",
}


def measured_of(path: str, name: str) -> tuple[dict[str, Any], float | None]:
    """A replayed configuration's model (measured timings and its settings) and the days its trace stands for."""
    try:
        summary = orjson.loads(Path(path).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise TraceError(f"--measured {path}: not a replay summary ({exc})") from None
    runs = {run.get("name"): run for run in summary.get("runs", []) if isinstance(run, dict)}
    if name not in runs:
        raise TraceError(f"--measured {path}: no configuration {name!r} (it has {', '.join(map(str, runs))})")
    model = runs[name].get("model")
    if not isinstance(model, dict):
        raise TraceError(f"--measured {path}: configuration {name!r} carries no measured model")
    days = summary.get("trace_days")
    return model, float(days) if isinstance(days, int | float) and days > 0 else None


def model_from_args(args: argparse.Namespace) -> tuple[WorkerModel, float | None]:
    values: dict[str, Any] = {}
    days = None
    if args.measured:
        values, days = measured_of(args.measured, args.config)
        # the replay's workers shared one machine, so their engine starts slowed each other; on RunPod
        # each worker has its own GPU (give --start-contention to keep it)
        values["start_contention"] = 0.0
    for flag, key in {**MEASURED_FLAGS, **SETTING_FLAGS}.items():
        given = getattr(args, flag)
        if given is not None:
            values[key] = given
    if args.no_cache:
        values["cache"] = False
    try:
        return WorkerModel(**values), days
    except (TypeError, ValueError) as exc:
        raise TraceError(f"worker model: {exc}") from None


def estimate_trace(args: argparse.Namespace, prices: PriceTable) -> int:
    """Both tiers on the simulated month: the cheap tier flex-only (workers_min 0), the reliable tier with its
    active workers kept warm (workers_min N, billed every second at the active rate; the rest is flex overflow)."""
    events = load_trace(args.trace)
    model, measured_days = model_from_args(args)
    trace_days = args.trace_days or measured_days or trace_days_of(events)
    tier_pairs = prices.pairs(args.gpu, active_workers=args.active_workers)
    months = {0: project_month(events, model.replace(workers_min=0), trace_days, days=args.days)}
    for n in {p.reliable.active_workers for p in tier_pairs} - {0}:
        warm = model.replace(workers_min=n, workers_max=max(model.workers_max, n))
        months[n] = project_month(events, warm, trace_days, days=args.days)
    month = months[0]
    rows, bills = [], []
    for pair in tier_pairs:
        n = pair.reliable.active_workers
        cheap = [_bill(month, pair.cheap, 0, args.days, rule) for rule in (True, False)]
        reliable = [_bill(months[n], pair.reliable, n, args.days, rule) for rule in (True, False)]
        saving = None if reliable[0] is None or cheap[0] is None else round(reliable[0] - cheap[0], 2)
        rows.append((pair.name, pair.cheap.priced_as, *map(_usd, cheap), pair.reliable.priced_as,
                     *map(_usd, reliable), _usd(saving)))  # fmt: skip
        bills.append({
            "gpu": pair.name, "hourly": pair.cheap.hourly,
            "startup_billed": cheap[0], "initializing_unbilled": cheap[1],
            "cheap": {"pools": pair.cheap.pools, "priced_as": pair.cheap.priced_as},
            "reliable": {"pools": pair.reliable.pools, "priced_as": pair.reliable.priced_as, "active_workers": n,
                         "hourly": pair.reliable.hourly, "active_hourly": pair.reliable.active_hourly,
                         "startup_billed": reliable[0], "initializing_unbilled": reliable[1]},
            "saving": saving,
        })  # fmt: skip
    if args.json:
        print(as_json({
            "trace": args.trace, "trace_days": trace_days, "days": args.days, "model": model.to_dict(),
            "projection": month.to_dict(), "reliable_projections": {n: m.to_dict() for n, m in months.items() if n},
            "bills": bills,
        }))  # fmt: skip
        return 0
    print(f"{args.trace}: {len(events)} requests standing for {trace_days:g} day(s), projected to {args.days} days")
    for n, m in sorted(months.items()):
        name = "cheap tier (flex only)" if n == 0 else f"reliable tier ({n} active worker{'s' * (n > 1)})"
        seconds = m.seconds_by_kind
        print(
            f"{name}: {m.requests:,.0f} requests, {m.workers_started:,.0f} cold starts, hit rate {m.hit_rate:.0%}, "
            f"latency p50/p95 {m.latency_p50:.1f}/{m.latency_p95:.1f} s; worker-hours: "
            + ", ".join(f"{k} {seconds[k] / 3600:,.1f}" for k in seconds)
        )
    print(table(["size", "cheap: pool", "$/month", "(Init. unbilled)", "reliable: pool", "$/month",
                 "(Init. unbilled)", "saves"], rows))  # fmt: skip
    return 0


def _bill(month: Projection, tier: TierPrice, active: int, days: int, startup_billed: bool) -> float | None:
    """A tier's month: its active workers every second at the active rate, the other seconds at its rate."""
    if tier.hourly is None or (active and tier.active_hourly is None):
        return None
    always = active * days * DAY_S
    rest = max(0.0, month.billed_seconds(startup_billed) - always)
    return cost_usd(always, tier.active_hourly or 0.0) + cost_usd(rest, tier.hourly)


def _usd(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.2f}"


def register_trace_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("--trace: simulate a trace (client.replay.projection)")
    g.add_argument("--trace", help="a JSONL trace to simulate instead of --requests-per-day")
    g.add_argument("--trace-days", type=float, help="days of traffic the trace holds (default: its span, or the "
                   "replay's)")  # fmt: skip
    g.add_argument("--measured", help="a replay's summary.json: the worker's measured timings and settings")
    g.add_argument("--config", default="frugal", help="--measured: which configuration (default frugal)")
    g.add_argument("--boot-seconds", type=float, help="container and process start until the worker takes jobs")
    g.add_argument("--engine-start-seconds", type=float, help="the engine's start-up")
    g.add_argument("--tokens-per-second", type=float, help="one request's pace")
    g.add_argument("--hit-seconds", type=float, help="a cache hit, take to answer")
    g.add_argument("--start-contention", type=float, help="slowdown of an engine start per other one beside it "
                   "(0: a GPU per worker, as on RunPod)")  # fmt: skip
    g.add_argument("--idle-timeout", type=float, help="the endpoint's idle timeout (default 5)")
    g.add_argument("--workers-max", type=int)
    g.add_argument("--scaler", choices=["QUEUE_DELAY", "REQUEST_COUNT"])
    g.add_argument("--scaler-value", type=float)
    g.add_argument("--engine-start", choices=["lazy", "boot", "background"])
    g.add_argument("--concurrency", type=int, help="MAX_CONCURRENCY")
    g.add_argument("--cold-concurrency", type=int, help="COLD_CONCURRENCY")
    g.add_argument("--no-cache", action="store_true", help="no response cache (a baseline worker)")
