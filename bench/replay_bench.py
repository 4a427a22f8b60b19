"""What the product saves: seed 004's profiles replayed on the local platform with SmolLM2.

    python -m bench replay              (make replay; REPLAY_PROFILES=light,medium for both)

Each profile's trace (light: 3 hours of traffic, medium: 1 hour; quiet hours
compressed 60x) runs through four configurations of the real worker, one after
the other:

- baseline: the usual worker's shape (engine started at boot, no cache, vLLM's
  default compiled start with no kept compile cache);
- frugal: this worker's defaults (lazy engine start, cache, the compile cache
  `builder warm` keeps beside the model);
- frugal-unbilled: frugal told that RunPod does not bill Initializing
  (BILL_INITIALIZING=false, so ENGINE_START=auto starts the engine at boot);
- frugal-unbilled-q60: the same on an endpoint whose QUEUE_DELAY scaler waits 60 s, not 4 s:
  jobs queued behind an engine starting at boot look overdue, and the default starts more
  workers (each billed its idle tail) for them.

The rows are ratios of bills taken from the platform's per-second ledger in the
same run (frugal over baseline with start-up billed; frugal-unbilled over
baseline with Initializing unbilled), the budget's count over the ledger's, the
projection (client.replay.projection, from each run's measured timings) over the
ledger's bill, and whether every deterministic request got the same text.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from client.replay.configs import build_configs
from client.replay.measure import model_of
from client.replay.profiles import generate
from client.replay.projection import project
from client.replay.runner import ReplayOptions, replay
from client.replay.summary import RunSummary, answer_mismatches
from client.replay.trace import dump_trace
from devtools.redis_server import existing_or_new

REPO = Path(__file__).resolve().parents[1]
MODEL = "smollm2"
CONFIGS = [
    ["baseline"],
    ["frugal"],
    ["frugal-unbilled", "BILL_INITIALIZING=false"],
    # the same, with an endpoint scaler that waits out a cold start before starting more workers
    ["frugal-unbilled-q60", "BILL_INITIALIZING=false", "scaler_value=60"],
]
HOURS = {"light": 3.0, "medium": 1.0}  # medium: one burst of about 40 requests (SmolLM2 on 2 cores is slow)
COMPRESS = 60.0


def warm(model: str) -> None:
    """`python -m builder warm`: the compile cache the image keeps beside the model (once)."""
    folder = REPO / "models" / model
    if (folder / "vllm-cache").is_dir():
        return
    print(f"builder warm {folder} (once)", flush=True)
    subprocess.run([sys.executable, "-m", "builder", "warm", str(folder)], cwd=REPO, check=True)


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


def rows_of(profile: str, runs: list[RunSummary], events: Any) -> list[dict[str, Any]]:
    by = {run.name: run for run in runs}
    base, frugal, unbilled, q60 = by["baseline"], by["frugal"], by["frugal-unbilled"], by["frugal-unbilled-q60"]
    rows = [
        {"metric": f"replay bill {profile} frugal/baseline, start-up billed",
         "value": ratio(frugal.bill_usd("startup_billed"), base.bill_usd("startup_billed")),
         "goal": "<= 0.40", "unit": "ratio"},
        {"metric": f"replay bill {profile} frugal-unbilled/baseline, Initializing unbilled",
         "value": ratio(unbilled.bill_usd("initializing_unbilled"), base.bill_usd("initializing_unbilled")),
         "goal": "<= 1.0", "unit": "ratio"},
        {"metric": f"replay bill {profile} frugal-unbilled-q60/baseline, Initializing unbilled",
         "value": ratio(q60.bill_usd("initializing_unbilled"), base.bill_usd("initializing_unbilled")),
         "goal": "<= 1.0", "unit": "ratio"},
        {"metric": f"replay same answers {profile}", "value": int(not answer_mismatches(events, runs)),
         "goal": "1", "unit": "bool"},
    ]  # fmt: skip
    for run in runs:
        rule = "startup_billed" if run.budget_counts_initializing else "initializing_unbilled"
        projection = project(events, model_of(run, events))
        rows += [
            {"metric": f"replay budget/bill {profile} {run.name}", "value": round(run.budget_over_bill(), 3),
             "goal": "1.0 +- 0.05", "unit": "ratio"},
            {"metric": f"replay projected/bill {profile} {run.name}",
             "value": ratio(projection.bill_usd(run.hourly_rate, rule == "startup_billed"), run.bill_usd(rule)),
             "goal": "1.0 +- 0.10", "unit": "ratio"},
            {"metric": f"replay cold starts {profile} {run.name}", "value": len(run.workers), "goal": "",
             "unit": "workers"},
        ]  # fmt: skip
    return rows


def run() -> list[dict[str, Any]]:
    warm(MODEL)
    rows: list[dict[str, Any]] = []
    with existing_or_new() as (redis_url, _owned):
        for profile in os.environ.get("REPLAY_PROFILES", "light").split(","):
            events = generate(profile, hours=HOURS.get(profile, 3.0), compress=COMPRESS, model=MODEL)
            print(
                f"{profile}: {len(events)} requests over {events[-1].at:.0f} s, {len(CONFIGS)} configurations",
                flush=True,
            )
            folder = REPO / "bench" / "replay-logs" / profile
            options = ReplayOptions(model=MODEL, redis_url=redis_url, log_dir=folder)
            runs = asyncio.run(replay(events, build_configs(CONFIGS), options))
            dump_trace(events, folder / "trace.jsonl")  # for `client estimate --trace ... --measured ...`
            (folder / "summary.json").write_bytes(orjson.dumps({
                "trace_days": HOURS.get(profile, 3.0) / 24, "gpu_hourly_rate": options.hourly_rate,
                "runs": [{**r.to_dict(), "model": model_of(r, events).to_dict()} for r in runs],
            }, option=orjson.OPT_INDENT_2))  # fmt: skip
            for r in runs:
                print(f"  {r.name}: ${r.bill_usd('startup_billed'):.4f} start-up billed, "
                      f"${r.bill_usd('initializing_unbilled'):.4f} Init. unbilled, {len(r.workers)} workers, "
                      f"budget {r.budget_seconds}", flush=True)  # fmt: skip
            rows += rows_of(profile, runs, events)
    return rows
