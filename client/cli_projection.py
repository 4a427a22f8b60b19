"""`python -m client estimate --trace FILE`: a month of a trace's traffic, simulated, at GPU prices.

    python -m client estimate --trace replay-out/trace.jsonl --measured replay-out/summary.json
    python -m client estimate --trace my.jsonl --engine-start-seconds 120 --tokens-per-second 60 \\
        --gpu RTX_4090 --gpu A100_80GB

The worker model's timings come from a replay's summary (`--measured`, the
configuration named by `--config`, default frugal) or from flags; flags win.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import orjson

from client.errors import TraceError
from client.replay.projection import WorkerModel, project_month, trace_days_of
from client.replay.trace import load_trace
from core.prices import PriceTable
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
    "workers_min": "workers_min",
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
    events = load_trace(args.trace)
    model, measured_days = model_from_args(args)
    trace_days = args.trace_days or measured_days or trace_days_of(events)
    month = project_month(events, model, trace_days, days=args.days)
    gpus = [prices.gpu(name) for name in args.gpu] if args.gpu else list(prices.by_vram())
    rows = []
    for g in gpus:
        rate = g.hourly("on_demand")
        rows.append((g.id, rate, month.bill_usd(rate, True), month.bill_usd(rate, False)))
    if args.json:
        print(as_json({
            "trace": args.trace, "trace_days": trace_days, "days": args.days, "model": model.to_dict(),
            "projection": month.to_dict(),
            "bills": [{"gpu": r[0], "hourly": r[1], "startup_billed": r[2], "initializing_unbilled": r[3]}
                      for r in rows],
        }))  # fmt: skip
        return 0
    seconds = month.seconds_by_kind
    print(
        f"{args.trace}: {len(events)} requests standing for {trace_days:g} day(s), projected to {args.days} days: "
        f"{month.requests:,.0f} requests, {month.workers_started:,.0f} cold starts, hit rate {month.hit_rate:.0%}, "
        f"latency p50/p95 {month.latency_p50:.1f}/{month.latency_p95:.1f} s"
    )
    print("worker-hours: " + ", ".join(f"{k} {seconds[k] / 3600:,.1f}" for k in seconds))
    print(table(["GPU", "$/h", "$/month (start-up billed)", "$/month (Init. unbilled)"], rows))
    return 0


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
    g.add_argument("--workers-min", type=int)
    g.add_argument("--workers-max", type=int)
    g.add_argument("--scaler", choices=["QUEUE_DELAY", "REQUEST_COUNT"])
    g.add_argument("--scaler-value", type=float)
    g.add_argument("--engine-start", choices=["lazy", "boot", "background"])
    g.add_argument("--concurrency", type=int, help="MAX_CONCURRENCY")
    g.add_argument("--cold-concurrency", type=int, help="COLD_CONCURRENCY")
    g.add_argument("--no-cache", action="store_true", help="no response cache (a baseline worker)")
