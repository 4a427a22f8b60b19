"""A fault run: mixed jobs through the real worker on the local platform while things break.

    python -m devtools.faults --jobs 1000 --workers 3     (bench/fault_bench.py runs it)

Jobs of every input shape (prompt, chat, streamed chat, the OpenAI routes, batches),
a tenth of them malformed, go through `/run` to an endpoint of real `python -m handler`
workers (the tiny model) sharing a real Redis. While they run, at set shares of the jobs
answered, the run:

1. SIGKILLs Redis and starts it again on the same port (its append-only file kept, as a
   managed Redis keeps its data);
2. flushes Redis's scripts (`SCRIPT FLUSH`), as a failover to a replica that never ran them;
3. SIGKILLs a worker's engine (vLLM's process group) while the worker holds jobs;
4. SIGKILLs a worker with its engine (a container lost), whose jobs the platform queues again.

The report checks what a caller and the bill must see: every job final (COMPLETED, or
FAILED with a typed error), every malformed job refused as `validation_error`, no
traceback in any answer or error, no error in the cache, no worker exit but the one
killed, and the budget's spend within a heartbeat and an exit per worker of the ledger's
bill.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import redis

from devtools.platform import EndpointConfig, Platform
from devtools.redis_server import RedisServer
from handler import keys
from handler.exposure import EXIT_ALLOWANCE_S

REPO = Path(__file__).resolve().parents[1]
API_KEY = "faults-key"
HEARTBEAT_S = 1.0
FINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})
ERROR_TYPES = frozenset({
    "validation_error", "engine_error", "engine_start_failed", "engine_crashed", "engine_request_failed",
    "budget_exceeded", "budget_unavailable", "store_unavailable", "internal_error", "config_error",
})  # fmt: skip
TRACEBACK = "Traceback (most recent call last)"
FAULTS = ((0.2, "redis_kill"), (0.4, "script_flush"), (0.6, "engine_kill"), (0.8, "worker_kill"))

_WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "seven",
    "red",
    "birds",
    "sing",
    "near",
    "one",
    "old",
    "tree",
]


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words))


def valid_input(rng: random.Random, i: int) -> dict[str, Any]:
    """One job of a random shape; a third greedy and repeated (cache hits)."""
    greedy = rng.random() < 0.33
    params = {"max_tokens": rng.choice([4, 8, 16]), "temperature": 0.0 if greedy else 0.8}
    prompt = f"Question {i % 7 if greedy else i}: {_text(rng, rng.choice([3, 12, 40]))}"
    shape = rng.choice(["prompt", "chat", "stream", "openai_chat", "openai_completions", "models", "batch"])
    messages = [{"role": "user", "content": prompt}]
    if shape == "prompt":
        return {"prompt": prompt, "sampling_params": params}
    if shape in ("chat", "stream"):
        return {"messages": messages, "sampling_params": params, "stream": shape == "stream"}
    if shape == "openai_chat":
        return {"openai_route": "/v1/chat/completions", "openai_input": {"messages": messages, **params}}
    if shape == "openai_completions":
        return {"openai_route": "/v1/completions", "openai_input": {"prompt": prompt, **params}}
    if shape == "models":
        return {"openai_route": "/v1/models"}
    return {"requests": [{"prompt": f"{prompt} {k}", "sampling_params": params} for k in range(rng.choice([2, 3]))]}


# values each sampling field must refuse, in the plain and the OpenAI shapes (a batch reports a bad
# item in that item's answer instead: it is not fuzzed here)
_BAD_VALUES: dict[str, tuple[Any, ...]] = {
    "max_tokens": (-1, 0, "hot", [], 1.5, 10**9),
    "temperature": (-3.0, "hot", [], 1e9, None),
    "n": (0, -2, "two", 10**6),
    "top_p": (0, -1, 2.5, "hot"),
    "stop": ([1, 2], {"a": 1}, ["x"] * 10_000),
    "seed": ("hot", 1.5, []),
}


def malformed_input(rng: random.Random, i: int) -> Any:
    """A job the worker must refuse: a fixed mistake, or a valid job with one sampling field fuzzed."""
    fixed: list[Any] = [
        {"prompt": "Hello", "sampling_params": {"temperature": "hot"}},
        {"prompt": 42},
        {"messages": "not a list"},
        {"messages": [{"role": "wizard", "content": "hi"}]},
        {"openai_route": "/v1/embeddingz", "openai_input": {}},
        {"requests": []},
        {"prompt": "x" * 400_000},
        {"prompt": "Hi", "sampling_params": {"max_tokens": 8, "max_completion_tokens": 10**7}},
        {"prompt": "Hi", "surprise": True},
        {},
    ]
    if rng.random() < 0.4:
        return rng.choice(fixed)
    job = valid_input(rng, i)
    while "requests" in job or job.get("openai_route") == "/v1/models":
        job = valid_input(rng, i)
    target = job.get("sampling_params") or job["openai_input"]
    key = rng.choice(sorted(_BAD_VALUES))
    target[key] = rng.choice(_BAD_VALUES[key])
    return job


def job_inputs(n: int, seed: int, bad_share: float = 0.1) -> list[tuple[Any, bool]]:
    rng = random.Random(seed)
    bad = set(rng.sample(range(n), round(n * bad_share)))
    return [((malformed_input(rng, i), True) if i in bad else (valid_input(rng, i), False)) for i in range(n)]


# ---------------------------------------------------------------- the report


@dataclass
class FaultReport:
    jobs: int
    seconds: float = 0.0
    statuses: Counter[str] = field(default_factory=Counter)
    error_types: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)  # one message per error type
    untyped: list[str] = field(default_factory=list)  # final but without a known error type
    not_final: list[str] = field(default_factory=list)
    tracebacks: list[str] = field(default_factory=list)
    malformed_accepted: list[str] = field(default_factory=list)
    malformed: int = 0
    cached_entries: int = 0
    cached_errors: list[str] = field(default_factory=list)
    faults: list[tuple[float, str]] = field(default_factory=list)
    workers: list[dict[str, Any]] = field(default_factory=list)
    crashed: list[str] = field(default_factory=list)  # workers that exited badly, the killed one aside
    billed_s: float = 0.0
    budget_spent_s: float = 0.0
    bound_s: float = 0.0

    def problems(self) -> list[str]:
        out = [f"{len(self.not_final)} job(s) never final: {self.not_final[:3]}"] if self.not_final else []
        if self.untyped:
            out.append(f"{len(self.untyped)} failure(s) without a known error type: {self.untyped[:3]}")
        if self.tracebacks:
            out.append(f"{len(self.tracebacks)} answer(s) carry a traceback: {self.tracebacks[:2]}")
        if self.malformed_accepted:
            out.append(f"{len(self.malformed_accepted)} malformed job(s) not refused: {self.malformed_accepted[:3]}")
        if self.cached_errors:
            out.append(f"{len(self.cached_errors)} error(s) in the cache: {self.cached_errors[:2]}")
        if self.crashed:
            out.append(f"worker(s) crashed: {self.crashed}")
        if abs(self.budget_spent_s - self.billed_s) > self.bound_s:
            out.append(f"budget spent {self.budget_spent_s:.1f} s vs billed {self.billed_s:.1f} s "
                       f"(bound {self.bound_s:.1f} s)")  # fmt: skip
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "jobs": self.jobs, "seconds": round(self.seconds, 1), "statuses": dict(self.statuses),
            "error_types": dict(self.error_types), "examples": self.examples, "malformed": self.malformed,
            "cached_entries": self.cached_entries, "faults": self.faults, "workers": self.workers,
            "billed_s": round(self.billed_s, 2), "budget_spent_s": round(self.budget_spent_s, 2),
            "bound_s": round(self.bound_s, 2), "problems": self.problems(),
        }  # fmt: skip


# ---------------------------------------------------------------- the faults


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def engine_of(worker_pid: int) -> int | None:
    """The worker's vLLM server process (the leader of the engine's process group), if running."""
    for child in _children(worker_pid):
        with contextlib.suppress(OSError):
            if b"vllm.entrypoints" in (Path("/proc") / str(child) / "cmdline").read_bytes():
                return child
    return None


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


# ---------------------------------------------------------------- the run


async def _job(session: aiohttp.ClientSession, base: str, job_input: Any, timeout_s: float) -> dict[str, Any]:
    async with session.post(f"{base}/run", json={"input": job_input}) as response:
        state: dict[str, Any] = await response.json(content_type=None)
    deadline = time.monotonic() + timeout_s
    while state.get("status") not in FINAL and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        async with session.get(f"{base}/status/{state['id']}") as response:
            state = await response.json(content_type=None)
    return state


def _check(report: FaultReport, index: int, malformed: bool, state: dict[str, Any]) -> None:
    status = str(state.get("status"))
    report.statuses[status] += 1
    where = f"job {index}"
    text = orjson.dumps(state).decode(errors="replace")
    if TRACEBACK in text:
        report.tracebacks.append(f"{where}: {text[:300]}")
    if status not in FINAL:
        report.not_final.append(where)
        return
    kind = None
    if status == "FAILED":
        with contextlib.suppress(orjson.JSONDecodeError, TypeError):
            error = orjson.loads(state.get("error") or "")
            kind = error.get("type") if isinstance(error, dict) else None
        if kind not in ERROR_TYPES:
            report.untyped.append(f"{where}: {text[:300]}")
        report.error_types[str(kind)] += 1
        report.examples.setdefault(str(kind), str(state.get("error"))[:300])
    if malformed and kind != "validation_error":
        report.malformed_accepted.append(f"{where}: {status} {text[:200]}")


async def fault_run(
    jobs: int = 1000,
    *,
    workers: int = 3,
    seed: int = 0,
    concurrency: int = 48,
    progress: Callable[[int], None] | None = None,
) -> FaultReport:
    inputs = job_inputs(jobs, seed)
    report = FaultReport(jobs=jobs, malformed=sum(bad for _, bad in inputs))
    namespace = f"faults-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="faults-redis-") as data:
        server = RedisServer(data_dir=data)
        server.extra = ["--appendonly", "yes", "--appendfsync", "always"]  # a kill loses nothing
        server.start()
        try:
            await _Run(server, report, workers).drive(namespace, inputs, concurrency, progress)
            report.budget_spent_s = _budget_spent(server.url, namespace)
            report.cached_entries, report.cached_errors = _cache_contents(server.url, namespace)
        finally:
            server.stop()
    return report


def _worker_env(server: RedisServer, namespace: str, workers: int) -> dict[str, str]:
    return {
        "EMBEDDED_MODEL": "tiny", "MODELS_DIR": str(REPO / "models"), "MODEL_MANIFEST": "/nonexistent/manifest.json",
        "NETWORK_VOLUME_DIR": "/nonexistent", "MODEL_CACHE_DIR": "/nonexistent", "ENGINE_EXTRA_ARGS": "--enforce-eager",
        "REDIS_URL": server.url, "CACHE_NAMESPACE": namespace, "BUDGET_NAMESPACE": namespace,
        "GPU_HOURLY_RATE": "3600", "WORKER_BOOT_SECONDS": "0", "BUDGET_HEARTBEAT_SECONDS": str(HEARTBEAT_S),
        "ENDPOINT_IDLE_TIMEOUT": "3", "ENDPOINT_WORKERS_MAX": str(workers), "MAX_CONCURRENCY": "16",
        "BUDGET_FAIL_MODE": "open", "LOG_LEVEL": "INFO",
    }  # fmt: skip


class _Run:
    """One fault run's platform, endpoint and faults."""

    def __init__(self, server: RedisServer, report: FaultReport, workers: int) -> None:
        self.server, self.report, self.workers = server, report, workers
        self.killed: set[str] = set()
        self.engine_killed: set[str] = set()
        self.answered = 0
        self.t0 = time.monotonic()

    async def drive(
        self, namespace: str, inputs: list[tuple[Any, bool]], concurrency: int, progress: Callable[[int], None] | None
    ) -> None:
        config = EndpointConfig(
            worker_command=[sys.executable, "-m", "handler"], env=_worker_env(self.server, namespace, self.workers),
            cwd=REPO, workers_max=self.workers, idle_timeout=3.0, gpu_hourly_rate=3600.0, execution_timeout=600.0,
        )  # fmt: skip
        async with Platform(api_key=API_KEY) as platform:
            ep = platform.add_endpoint("faults", config)
            base = f"{platform.url}/v2/faults"
            gate = asyncio.Semaphore(concurrency)  # jobs in flight: sending paces with answering
            due = list(FAULTS)
            headers = {"Authorization": f"Bearer {API_KEY}"}
            async with aiohttp.ClientSession(headers=headers) as session:

                async def one(index: int, job_input: Any, malformed: bool) -> None:
                    try:
                        state = await _job(session, base, job_input, timeout_s=600)
                    finally:
                        gate.release()
                    _check(self.report, index, malformed, state)
                    self.answered += 1
                    if progress is not None:
                        progress(1)

                tasks = []
                for index, (job_input, malformed) in enumerate(inputs):
                    await self.due_faults(ep, due, len(inputs))
                    await gate.acquire()
                    tasks.append(asyncio.create_task(one(index, job_input, malformed)))
                while due and not all(t.done() for t in tasks):
                    await self.due_faults(ep, due, len(inputs))
                    await asyncio.sleep(0.1)
                await asyncio.gather(*tasks)
            await ep.wait_workers(0, timeout=300)
            self.tally(ep)

    async def due_faults(self, ep: Any, due: list[tuple[float, str]], jobs: int) -> None:
        """The faults whose share of answered jobs is reached (so engines are up and serving)."""
        while due and self.answered >= due[0][0] * jobs:
            await self.fault(ep, due.pop(0)[1])

    async def fault(self, ep: Any, what: str) -> None:
        self.report.faults.append((round(time.monotonic() - self.t0, 1), what))
        if what == "redis_kill":
            self.server.kill()
            await asyncio.sleep(2.0)
            self.server.start()
            return
        if what == "script_flush":
            client = redis.Redis.from_url(self.server.url)
            client.script_flush()
            client.close()
            return
        live = [e for e in ep.ledger() if e.pid and e.exited_at is None]
        # the worker that has served most (its engine up, serving a batch) for the engine; another for the worker
        busy = sorted(live, key=lambda e: (e.state != "running", -e.jobs_taken))
        if what == "engine_kill":
            busy = sorted(live, key=lambda e: -e.jobs_taken)
        if what == "worker_kill":
            busy = [e for e in busy if e.worker_id not in self.engine_killed] or busy
        if not busy:
            self.report.faults[-1] = (self.report.faults[-1][0], f"{what}: no live worker")
            return
        entry = busy[0]
        engine = engine_of(entry.pid or 0)
        if what == "worker_kill":
            self.killed.add(entry.worker_id)
            _kill_group(entry.pid or 0)  # the container: the worker and its process group
        if engine is not None:
            _kill_group(engine)  # vLLM's server and its engine core
            if what == "engine_kill":
                self.engine_killed.add(entry.worker_id)
        elif what == "engine_kill":
            self.report.faults[-1] = (self.report.faults[-1][0], f"{what}: {entry.worker_id} had no engine")

    def tally(self, ep: Any) -> None:
        report = self.report
        report.seconds = time.monotonic() - self.t0
        ledger = ep.ledger()
        report.billed_s = ep.billed_seconds(True)
        report.bound_s = len(ledger) * (HEARTBEAT_S + EXIT_ALLOWANCE_S) + 1.0
        for entry in ledger:
            report.workers.append({
                "id": entry.worker_id, "seconds": round(entry.lifetime_seconds, 1), "jobs": entry.jobs_taken,
                "exit": entry.exit_code, "stop": entry.stop_reason,
            })  # fmt: skip
            if entry.worker_id not in self.killed and entry.exit_code not in (0, None):
                report.crashed.append(f"{entry.worker_id} exit {entry.exit_code} ({entry.stop_reason})")
                report.crashed.append(ep.worker_logs(entry.worker_id)[-2000:])


def _budget_spent(url: str, namespace: str) -> float:
    """The budget's spend over every day it counted (seconds: the workers priced a second at $1)."""
    client = redis.Redis.from_url(url)
    try:
        total = 0
        for key in client.scan_iter(match=f"{keys.PREFIX}:{{budget:{namespace}:*}}:state"):
            total += int(client.hget(key, "spent") or 0)
        return total / 1_000_000
    finally:
        client.close()


def _cache_contents(url: str, namespace: str) -> tuple[int, list[str]]:
    client = redis.Redis.from_url(url)
    try:
        entries, errors = 0, []
        for key in client.scan_iter(match=f"{keys.PREFIX}:{{cache:{namespace}:*}}"):
            raw = client.get(key)
            if raw is None:
                continue
            entries += 1
            result = orjson.loads(raw).get("result", {})
            if not isinstance(result, dict) or "error" in result:
                errors.append(f"{key!r}: {raw[:200]!r}")
        return entries, errors
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.faults", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from tqdm import tqdm

    with tqdm(total=args.jobs, unit="job", desc="faults") as bar:
        report = asyncio.run(fault_run(args.jobs, workers=args.workers, seed=args.seed, progress=bar.update))
    print(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode())
    return 1 if report.problems() else 0


if __name__ == "__main__":
    sys.exit(main())
