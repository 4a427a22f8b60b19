"""Drive one configuration through a trace on the local platform (devtools.platform).

Each configuration gets its own endpoint on one platform, run after the other
(side by side on one machine they would slow each other's engines): the real
worker processes (`python -m handler`) are started from zero by the platform's
scaler, jobs arrive at the trace's offsets through the endpoint API (`/runsync`,
as `runpod.Endpoint.run_sync` sends them, polling `/status` past its wait),
and once the last answer is in, the replay waits for the endpoint to scale back
to zero so every idle tail is on the bill. The budget's own count is read with
`python -m handler.stats spend --json`, the command users run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from client.errors import TraceError
from client.replay.configs import ReplayConfig
from client.replay.measure import engine_starts_in_log
from client.replay.summary import JobRecord, RunSummary, WorkerLine, answer_of
from client.replay.trace import TraceEvent
from devtools.platform import EndpointConfig, Platform

REPO_ROOT = Path(__file__).resolve().parents[2]
API_KEY = "replay-key"
SECOND_USD = 3600.0  # the workers' GPU_HOURLY_RATE: the budget's dollars are worker-seconds
FINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})
RUNSYNC_WAIT_MS = 300_000
POLL_S = 0.2

Progress = Callable[[int], None]


@dataclass(frozen=True)
class ReplayOptions:
    model: str = "smollm2"  # a model folder under models/ (smollm2, tiny) or a path
    redis_url: str = ""
    hourly_rate: float = 1.116  # USD per worker-hour for the bills (RunPod's 4090 flex rate)
    job_timeout_s: float = 1800.0  # a job not final by then is recorded "lost"
    scale_down_timeout_s: float = 300.0
    log_dir: Path | None = None


def worker_env(config: ReplayConfig, options: ReplayOptions, namespace: str) -> dict[str, str]:
    """The worker's environment: the replay's plumbing, then the configuration's own settings."""
    ep = config.endpoint
    model = Path(options.model)
    where = (
        {"MODEL_NAME": str(model.resolve())}
        if model.is_absolute() or model.exists()
        else {"EMBEDDED_MODEL": options.model, "MODELS_DIR": str(REPO_ROOT / "models")}
    )
    env = {
        **where,
        "REDIS_URL": options.redis_url,
        "CACHE_NAMESPACE": namespace,
        "BUDGET_NAMESPACE": namespace,
        "GPU_HOURLY_RATE": str(SECOND_USD),
        "ENDPOINT_IDLE_TIMEOUT": str(ep["idle_timeout"]),
        "ENDPOINT_WORKERS_MAX": str(ep["workers_max"]),
        "WORKER_BOOT_SECONDS": str(ep["container_start_delay"]),
        "LOG_LEVEL": "INFO",  # the engine's start-up times are read from the log
    }
    env.update(config.worker_env)
    return env


def endpoint_config(config: ReplayConfig, options: ReplayOptions, env: dict[str, str]) -> EndpointConfig:
    bill_initializing = env.get("BILL_INITIALIZING", "true").lower() not in {"0", "false", "no", "off"}
    return EndpointConfig(
        worker_command=[sys.executable, "-m", "handler"],
        env=env,
        cwd=REPO_ROOT,
        gpu_hourly_rate=options.hourly_rate,
        bill_initializing=bill_initializing,
        **config.endpoint,
    ).validate()


async def _one_job(
    session: aiohttp.ClientSession, base: str, index: int, event: TraceEvent, *, t0: float, options: ReplayOptions
) -> JobRecord:
    await asyncio.sleep(max(0.0, t0 + event.at - time.monotonic()))
    submitted = time.monotonic() - t0
    deadline = time.monotonic() + options.job_timeout_s
    state: dict[str, Any] = {}
    try:
        async with session.post(f"{base}/runsync?wait={RUNSYNC_WAIT_MS}", json={"input": event.input}) as response:
            state = await response.json(content_type=None)
        while state.get("status") not in FINAL and time.monotonic() < deadline:
            await asyncio.sleep(POLL_S)
            async with session.get(f"{base}/status/{state['id']}") as response:
                state = await response.json(content_type=None)
    except (aiohttp.ClientError, KeyError, ValueError) as exc:
        return JobRecord(index, event.at, submitted, time.monotonic() - t0, "lost", error_type=type(exc).__name__)
    finished = time.monotonic() - t0
    status = str(state.get("status", "lost"))
    if status not in FINAL:
        status = "lost"
    error_type = None
    if status != "COMPLETED":
        error_type = _error_type(state.get("error")) or status
    execution = state.get("executionTime")
    return JobRecord(
        index, event.at, submitted, finished, status, answer_of(state.get("output")), error_type,
        worker_id=state.get("workerId"), execution_s=execution / 1000 if isinstance(execution, int | float) else None,
    )  # fmt: skip


def _error_type(error: Any) -> str | None:
    """The worker's error `type` (its error output is a JSON string in RunPod's `error` field)."""
    if isinstance(error, str):
        with contextlib.suppress(orjson.JSONDecodeError):
            error = orjson.loads(error)
    return str(error.get("type")) if isinstance(error, dict) and error.get("type") else None


def budget_seconds(redis_url: str, namespace: str) -> dict[str, float]:
    """What the budget counted (boot, engine start, jobs, idle), read as users read it."""
    env = {**os.environ, "REDIS_URL": redis_url, "BUDGET_NAMESPACE": namespace}
    done = subprocess.run(
        [sys.executable, "-m", "handler.stats", "spend", "--days", "2", "--json"],
        capture_output=True, env=env, cwd=REPO_ROOT, check=False, timeout=60,
    )  # fmt: skip
    if done.returncode != 0:
        raise TraceError(f"handler.stats spend failed: {done.stderr.decode(errors='replace')[-500:]}")
    rows = orjson.loads(done.stdout)["rows"]
    kinds = {"boot": "boot_usd", "engine_start": "engine_start_usd", "jobs": "jobs_usd", "idle": "idle_usd"}
    return {kind: sum(float(row.get(field) or 0.0) for row in rows) for kind, field in kinds.items()}


async def replay_config(
    platform: Platform,
    events: Sequence[TraceEvent],
    config: ReplayConfig,
    options: ReplayOptions,
    progress: Progress | None = None,
) -> RunSummary:
    namespace = f"replay-{config.name}-{uuid.uuid4().hex[:8]}"
    env = worker_env(config, options, namespace)
    endpoint_id = f"replay-{config.name}"
    ep = platform.add_endpoint(endpoint_id, endpoint_config(config, options, env))
    t0 = time.monotonic()
    base = f"{platform.url}/v2/{endpoint_id}"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    connector = aiohttp.TCPConnector(limit=0)
    try:
        async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
            jobs = (_one_job(session, base, i, e, t0=t0, options=options) for i, e in enumerate(events))
            tasks = [asyncio.create_task(job) for job in jobs]
            records: list[JobRecord] = []
            for task in asyncio.as_completed(tasks):
                records.append(await task)
                if progress is not None:
                    progress(1)
        await ep.wait_workers(0, timeout=options.scale_down_timeout_s)  # every idle tail billed
        workers = [
            WorkerLine(
                worker_id=entry.worker_id,
                spawned=entry.spawned_at - t0,
                ready=None if entry.ready_at is None else entry.ready_at - t0,
                exited=None if entry.exited_at is None else entry.exited_at - t0,
                stopped=None if entry.stop_requested_at is None else entry.stop_requested_at - t0,
                engine_starts=tuple(engine_starts_in_log(ep.worker_logs(entry.worker_id))),
                seconds=dict(entry.seconds),
                jobs_taken=entry.jobs_taken,
                stop_reason=entry.stop_reason,
            )
            for entry in ep.ledger()
        ]
    finally:
        if options.log_dir is not None:
            _keep_logs(ep, options.log_dir / config.name)
        await platform.remove_endpoint(endpoint_id)
    return RunSummary(
        name=config.name,
        hourly_rate=options.hourly_rate,
        workers=workers,
        jobs=sorted(records, key=lambda r: r.index),
        budget_seconds=budget_seconds(options.redis_url, namespace) if options.redis_url else {},
        budget_counts_initializing=ep.config.bill_initializing,
        config=config.to_dict(),
    )


def _keep_logs(ep: Any, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for entry in ep.ledger():
        (folder / f"{entry.worker_id}.log").write_text(ep.worker_logs(entry.worker_id))


async def replay(
    events: Sequence[TraceEvent],
    configs: Sequence[ReplayConfig],
    options: ReplayOptions,
    progress: Progress | None = None,
) -> list[RunSummary]:
    """Every configuration through the trace, one after the other, on one local platform."""
    async with Platform(api_key=API_KEY) as platform:
        return [await replay_config(platform, events, config, options, progress) for config in configs]
