"""`python -m client replay`: a trace through configurations on the local platform, bills compared.

    python -m client replay --profile light --hours 3 --compress 60 --out replay-out
    python -m client replay --trace my.jsonl --config baseline --config frugal \\
        --config eager ENGINE_EXTRA_ARGS=--enforce-eager idle_timeout=10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from client.cli_planning import prices_of
from client.errors import TraceError
from client.replay.configs import build_configs
from client.replay.measure import model_of
from client.replay.profiles import PROFILES, generate
from client.replay.projection import project
from client.replay.runner import ReplayOptions, replay
from client.replay.summary import RULES, RunSummary, answer_mismatches
from client.replay.trace import TraceEvent, dump_trace, load_trace
from core.tables import as_json, table


def events_of(args: argparse.Namespace) -> list[TraceEvent]:
    if args.trace:
        return load_trace(args.trace)
    return generate(
        args.profile, hours=args.hours, compress=args.compress, quiet_gap=args.quiet_gap,
        repeat_share=args.repeat_share, model=Path(args.model).name, tokens_per_second=args.tokens_per_second,
        seed=args.seed,
    )  # fmt: skip


@contextlib.contextmanager
def redis_for(url: str) -> Iterator[str]:
    """The Redis the workers share: the one given, else a private redis-server for the replay."""
    if url:
        yield url
        return
    from devtools.redis_server import RedisServer

    try:
        server = RedisServer().start()
    except RuntimeError as exc:
        raise TraceError(f"no Redis: give --redis-url (or REDIS_URL), or install redis-server ({exc})") from None
    try:
        yield server.url
    finally:
        server.stop()


def projected_of(run: RunSummary, events: Sequence[TraceEvent]) -> dict[str, Any]:
    """The run's measured worker model and the bill the projection gives the same trace with it."""
    model = model_of(run, events)
    projection = project(events, model)
    return {
        "model": model.to_dict(),
        "projected_bill_usd": {rule: projection.bill_usd(run.hourly_rate, rule == RULES[0]) for rule in RULES},
        "projected_cold_starts": projection.workers_started,
    }


def report(runs: Sequence[RunSummary], mismatches: Sequence[str], projected: dict[str, dict[str, Any]]) -> str:
    rows = []
    for run in runs:
        lat = run.latency()
        split = run.budget_seconds
        rows.append((
            run.name, f"${run.bill_usd('startup_billed'):.4f}", f"${run.bill_usd('initializing_unbilled'):.4f}",
            *(f"{split.get(k, 0.0):.0f}" for k in ("boot", "engine_start", "jobs", "idle")),
            len(run.workers), f"{lat['p50']:.1f}/{lat['p95']:.1f}/{lat['p99']:.1f}", f"{run.hit_rate():.0%}",
            f"{run.budget_over_bill():.3f}", sum(run.failures().values()),
        ))  # fmt: skip
    headers = ["config", "bill (start-up billed)", "bill (Init. unbilled)", "boot s", "engine s", "jobs s", "idle s",
               "cold starts", "latency p50/95/99 s", "hits", "budget/bill", "failed"]  # fmt: skip
    lines = [table(headers, rows)]
    for run in runs:
        bills = projected[run.name]["projected_bill_usd"]
        lines.append(f"{run.name}: projected from its measured timings " + ", ".join(
            f"{rule.replace('_', ' ')} ${bills[rule]:.4f} ({bills[rule] / run.bill_usd(rule):.2f} of the ledger's)"
            for rule in RULES if run.bill_usd(rule) > 0
        ))  # fmt: skip
    base = next((r for r in runs if r.name == "baseline"), None)
    if base is not None:
        for run in runs:
            if run is not base:
                ratios = ", ".join(
                    f"{rule.replace('_', ' ')} {run.bill_usd(rule) / base.bill_usd(rule):.2f}"
                    for rule in RULES
                    if base.bill_usd(rule) > 0
                )
                lines.append(f"{run.name} / baseline: {ratios}")
    lines.append(
        "same answers for every deterministic request: "
        + ("yes" if not mismatches else f"NO ({len(mismatches)}):\n  " + "\n  ".join(mismatches[:10]))
    )
    return "\n".join(lines)


def cmd_replay(args: argparse.Namespace) -> int:
    events = events_of(args)
    configs = build_configs(args.config or [])
    rate = args.gpu_price if args.gpu_price is not None else prices_of(args).hourly_rate(args.gpu)
    out = Path(args.out) if args.out else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        dump_trace(events, out / "trace.jsonl")
    with redis_for(args.redis_url or os.environ.get("REDIS_URL", "")) as redis_url:
        options = ReplayOptions(
            model=args.model, redis_url=redis_url, hourly_rate=rate, log_dir=(out / "logs") if out else None
        )
        runs = _run(events, configs, options, quiet=args.json)
    mismatches = answer_mismatches(events, runs)
    projected = {run.name: projected_of(run, events) for run in runs}
    result: dict[str, Any] = {
        "events": len(events),
        "span_s": events[-1].at,
        "trace_days": args.hours / 24 if args.profile else None,  # what a profile's trace stands for
        "gpu_hourly_rate": rate,
        "runs": [{**run.to_dict(), **projected[run.name]} for run in runs],
        "answer_mismatches": mismatches,
    }
    if out is not None:
        (out / "summary.json").write_text(as_json(result))
        if not args.no_chart:
            from client.replay.chart import write_chart

            result["chart"] = str(write_chart(runs, out / "bills.png"))
    print(as_json(result) if args.json else report(runs, mismatches, projected))
    if out is not None and not args.json:
        print(f"written: {out / 'summary.json'}" + ("" if args.no_chart else f", {out / 'bills.png'}"))
    return 1 if mismatches else 0


def _run(events: list[TraceEvent], configs: Any, options: ReplayOptions, *, quiet: bool) -> list[RunSummary]:
    from tqdm import tqdm

    total = len(events) * len(configs)
    with tqdm(total=total, unit="job", desc="replay", disable=quiet) as bar:
        return asyncio.run(replay(events, configs, options, progress=bar.update))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("replay", help="replay a traffic trace on the local platform and compare the bills")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--trace", help="a JSONL trace (at, input, tags per line)")
    source.add_argument("--profile", choices=sorted(PROFILES), help="generate seed 004's usage profile")
    p.add_argument("--hours", type=float, default=3.0, help="--profile: hours of traffic (default 3)")
    p.add_argument("--compress", type=float, default=60.0, help="--profile: shorten quiet gaps by this factor")
    p.add_argument("--quiet-gap", type=float, default=30.0, help="--profile: shortest quiet gap kept, s (> idle)")
    p.add_argument("--repeat-share", type=float, default=0.3, help="--profile: share of repeated requests")
    p.add_argument("--tokens-per-second", type=float, help="--profile: the model's pace (sets max_tokens)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default="smollm2", help="a folder under models/ (smollm2, tiny) or a model path")
    p.add_argument(
        "--config", nargs="+", action="append", metavar="NAME_OR_KEY=VALUE",
        help="NAME [KEY=VALUE ...]: a preset (baseline, frugal) or a variant; UPPER_CASE keys are worker "
        "settings, lower_case ones endpoint settings (repeatable; default: baseline and frugal)",
    )  # fmt: skip
    price = p.add_mutually_exclusive_group()
    price.add_argument("--gpu", default="RTX_4090", help="price the bills as this GPU (the price table's rate)")
    price.add_argument("--gpu-price", type=float, help="price the bills at this USD per worker-hour")
    p.add_argument("--prices", help="price table JSON overriding the packaged one (also env PRICE_TABLE)")
    p.add_argument("--redis-url", default="", help="Redis the workers share (default: REDIS_URL, else a private one)")
    p.add_argument("--out", help="folder for trace.jsonl, summary.json, bills.png and the workers' logs")
    p.add_argument("--no-chart", action="store_true", help="skip the PNG")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table (no progress bar)")
    p.set_defaults(func=cmd_replay)
