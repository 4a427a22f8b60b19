"""What a replay measured, as the projection's worker model (pure).

A replay runs the real worker; the projection (`client.replay.projection`)
simulates it from a handful of timings. This module reads those timings off a
replayed configuration, so a projection of the same trace can be checked
against the bill the platform's ledger gave, and then priced for a month:

    boot_s             ledger: the worker's start until its first job-take (less its
                       engine start under ENGINE_START=boot)
    engine_start_s     the engine's own start-up alone ("engine ready" in the worker's log)
    start_contention   how much longer a start takes per other engine starting beside it (the
                       local platform's workers share one machine's CPU; 0 on RunPod)
    exit_s             ledger: SIGTERM until the process has exited
    hit_s              platform: the quickest cache hit's executionTime (others may have
                       waited for an identical request's answer: the projection models that)
    tokens_per_second  platform: the tokens misses asked for (max_tokens x n) over their
                       executionTime less the engine start they waited for and the
                       request floor; answers that stop early are absorbed in the pace

and the worker's settings that shape the simulation (ENGINE_START, MAX_CONCURRENCY,
COLD_CONCURRENCY, CACHE_ENABLED, CACHE_TTL, DEFAULT_MAX_TOKENS) from the
configuration's environment, with the worker's defaults (tests hold them equal).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from client.errors import TraceError
from client.replay.projection import WorkerModel, request_tokens
from client.replay.summary import RunSummary, WorkerLine
from client.replay.trace import TraceEvent

# the worker's defaults for the settings the projection models (handler/settings.py)
WORKER_DEFAULTS = {
    "ENGINE_START": "auto",
    "BILL_INITIALIZING": "true",
    "MAX_CONCURRENCY": "64",
    "COLD_CONCURRENCY": "4",
    "CACHE_ENABLED": "true",
    "CACHE_TTL": "86400",
    "DEFAULT_MAX_TOKENS": "256",
}
_FALSE = {"0", "false", "no", "off"}
_ENGINE_READY = re.compile(r"engine ready: .*'total_s': ([0-9.]+)")


def engine_starts_in_log(log: str) -> list[float]:
    """Seconds of each engine start a worker's log reports (`engine ready: {... 'total_s': 31.2}`)."""
    return [float(m.group(1)) for m in _ENGINE_READY.finditer(log)]


def _flag(env: Mapping[str, str], key: str) -> bool:
    return env.get(key, WORKER_DEFAULTS[key]).strip().lower() not in _FALSE


def _int(env: Mapping[str, str], key: str) -> int:
    raw = env.get(key, WORKER_DEFAULTS[key])
    try:
        return int(raw)
    except ValueError:
        raise TraceError(f"{key}={raw!r} is not a whole number") from None


def engine_start_mode(env: Mapping[str, str]) -> str:
    """ENGINE_START as the worker resolves it (auto: lazy where start-up is billed, else boot)."""
    mode = env.get("ENGINE_START", WORKER_DEFAULTS["ENGINE_START"]).strip().lower()
    if mode == "auto":
        return "lazy" if _flag(env, "BILL_INITIALIZING") else "boot"
    return mode


def settings_model(worker_env: Mapping[str, str], endpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The worker model's settings from a configuration (worker environment, endpoint settings)."""
    return {
        "engine_start": engine_start_mode(worker_env),
        "concurrency": _int(worker_env, "MAX_CONCURRENCY"),
        "cold_concurrency": _int(worker_env, "COLD_CONCURRENCY"),
        "cache": _flag(worker_env, "CACHE_ENABLED"),
        "cache_ttl": float(_int(worker_env, "CACHE_TTL")),
        "default_max_tokens": _int(worker_env, "DEFAULT_MAX_TOKENS"),
        "idle_timeout": float(endpoint["idle_timeout"]),
        "workers_min": int(endpoint["workers_min"]),
        "workers_max": int(endpoint["workers_max"]),
        "scaler": str(endpoint["scaler_type"]),
        "scaler_value": float(endpoint["scaler_value"]),
    }


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def start_fit(workers: Sequence[WorkerLine], mode: str) -> tuple[float | None, float]:
    """(an engine's start alone, its slowdown per other engine starting at its start): E = E0 (1 + c k).

    Each worker's first start began when it asked for jobs less the start (boot), or when it asked
    (lazy, background: its first job, or at once); `k` counts the other starts under way then. A
    least-squares line through (k, E); with no spread in `k`, the median start and no slowdown.
    """
    spans = []
    for w in workers:
        if w.ready is None or not w.engine_starts:
            continue
        seconds = w.engine_starts[0]
        begin = w.ready - seconds if mode == "boot" else w.ready
        spans.append((begin, seconds))
    if not spans:
        return None, 0.0
    others = [
        sum(1 for j, (b, e) in enumerate(spans) if j != i and b <= begin < b + e) for i, (begin, _) in enumerate(spans)
    ]
    starts = [e for _, e in spans]
    if len(set(others)) < 2:
        return _median(starts), 0.0
    slope, alone = _line(others, starts)
    if alone <= 0:
        return _median(starts), 0.0
    return alone, max(0.0, slope / alone)


def _line(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """(slope, intercept) of the least-squares line."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return slope, my - slope * mx


def timings(run: RunSummary, events: Sequence[TraceEvent], floor_s: float) -> dict[str, float]:
    """The measured timings of one replayed configuration (keys missing where nothing measured them)."""
    mode = engine_start_mode(run.config.get("worker_env", {}))
    engine = [s for worker in run.workers for s in worker.engine_starts]
    engine_s, contention = start_fit(run.workers, mode)
    boots = [  # under ENGINE_START=boot its first job-take waits for its engine
        w.ready - w.spawned - (w.engine_starts[0] if w.engine_starts else engine_s or 0.0) * (mode == "boot")
        for w in run.workers
        if w.ready is not None
    ]
    exits = [w.exited - w.stopped for w in run.workers if w.exited is not None and w.stopped is not None]
    hits, tokens, gen_s = [], 0, 0.0
    default = _int(run.config.get("worker_env", {}), "DEFAULT_MAX_TOKENS")
    for job in run.answered():
        if job.execution_s is None or job.answer is None:
            continue
        if job.answer.get("cached"):
            hits.append(job.execution_s)
            continue
        waited = float((job.answer.get("timings") or {}).get("engine_start_ms") or 0.0) / 1000
        tokens += request_tokens(events[job.index].input, default)
        gen_s += max(0.0, job.execution_s - waited - floor_s)
    out = {
        "boot_s": _median([max(0.0, b) for b in boots]),
        "engine_start_s": engine_s,
        "start_contention": contention if engine else None,
        "exit_s": _median(exits),
        "hit_s": min(hits, default=None),  # a hit that waited for its leader's answer (single flight) is slower
        "tokens_per_second": tokens / gen_s if gen_s > 0 and tokens else None,
    }
    return {key: round(value, 4) for key, value in out.items() if value is not None}


def model_of(run: RunSummary, events: Sequence[TraceEvent], **overrides: Any) -> WorkerModel:
    """The worker model a replayed configuration measured, its settings from its configuration."""
    floor = overrides.get("request_floor_s", WorkerModel.request_floor_s)
    config = run.config
    settings = settings_model(config.get("worker_env", {}), config.get("endpoint", {}))
    return WorkerModel.from_measured(timings(run, events, floor), **{**settings, **overrides})
