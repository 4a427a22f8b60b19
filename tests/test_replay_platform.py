"""`python -m client replay` end to end: a short trace through two configurations of the real worker
on the local platform (the tiny model, eager start), the summary checked against the worker processes
seen from outside (/proc, by this test), the budget's count and the projection."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest

from client.replay.trace import DETERMINISTIC, REPEAT, TraceEvent, dump_trace
from handler.exposure import EXIT_ALLOWANCE_S
from tests.platform_support import ProcWatch
from tests.prerequisites import needs_engine_venv, needs_tiny

pytestmark = [pytest.mark.engine, pytest.mark.redis, needs_tiny, needs_engine_venv]
REPO = Path(__file__).resolve().parents[1]
CONTAINER_START_S = 0.5  # billed by the platform before each worker process runs
PER_WORKER_SLACK_S = 0.25  # the ledger's account of a life against /proc's (test_ledger_bill)


class WorkerWatch:
    """The worker processes (`-m handler`) a parent starts, followed through /proc from a thread:
    each one's start time (/proc/<pid>/stat) and the moment it is gone or a zombie (polled every 10 ms)."""

    def __init__(self, parent: int) -> None:
        self.parent = parent
        self.watches: dict[int, ProcWatch] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _children(self) -> list[int]:
        pids: list[int] = []
        for task in Path(f"/proc/{self.parent}/task").glob("*"):
            try:
                pids += [int(p) for p in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
        return pids

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in self._children():
                if pid in self.watches:
                    continue
                try:
                    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                    if b"handler" in args:
                        self.watches[pid] = ProcWatch(pid)
                except (OSError, ValueError, IndexError):
                    continue
            now = time.monotonic()
            for watch in self.watches.values():
                if watch.exited_at is None and not watch.alive():
                    watch.exited_at = now
            self._stop.wait(0.01)

    def lives(self) -> list[float]:
        """Each worker's life in the order they started, its container start included."""
        self._stop.set()
        self._thread.join()
        watches = sorted(self.watches.values(), key=lambda w: w.started_at)
        assert all(w.exited_at is not None for w in watches), "a worker outlived the replay"
        return [CONTAINER_START_S + (w.exited_at or 0.0) - w.started_at for w in watches]


def greedy(prompt: str) -> dict[str, object]:
    return {"prompt": prompt, "sampling_params": {"max_tokens": 12, "temperature": 0.0, "ignore_eos": True}}


TRACE = [
    TraceEvent(0.0, greedy("The capital of France is"), (DETERMINISTIC,)),
    TraceEvent(0.5, {"prompt": "Once upon a time", "sampling_params": {"max_tokens": 12, "temperature": 0.7}}),
    TraceEvent(1.0, greedy("The capital of France is"), (DETERMINISTIC, REPEAT)),
    TraceEvent(60.0, greedy("The capital of France is"), (DETERMINISTIC, REPEAT)),
]


def test_two_configurations_replayed_and_compared(tmp_path: Path, redis_url: str) -> None:
    dump_trace(TRACE, tmp_path / "trace.jsonl")
    shared = [
        "ENGINE_EXTRA_ARGS=--enforce-eager", "workers_max=1", "idle_timeout=3",
        f"container_start_delay={CONTAINER_START_S}",
    ]  # fmt: skip
    command = [
        sys.executable, "-m", "client", "replay", "--trace", str(tmp_path / "trace.jsonl"), "--model", "tiny",
        "--config", "baseline", *shared, "--config", "frugal", *shared,
        "--redis-url", redis_url, "--gpu-price", "3.6", "--out", str(tmp_path / "out"), "--json",
    ]  # fmt: skip
    with subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as replay:
        watch = WorkerWatch(replay.pid)
        stdout, stderr = replay.communicate(timeout=900)
    assert replay.returncode == 0, stderr.decode(errors="replace")[-3000:]
    seen = watch.lives()
    result = orjson.loads(stdout)
    assert result == orjson.loads((tmp_path / "out" / "summary.json").read_bytes()) | {"chart": result["chart"]}
    assert Path(result["chart"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result["answer_mismatches"] == []
    runs = {run["name"]: run for run in result["runs"]}
    for name, run in runs.items():
        assert run["answered"] == len(TRACE) and run["failures"] == {}, (name, run["failures"])
        workers = run["workers"]
        # the summary's own lines add up: the bill is every worker's life from its start to its exit
        lives = sum(w["exited"] - w["spawned"] for w in workers)
        assert run["billed_seconds"]["startup_billed"] == pytest.approx(lives, rel=1e-6)
        assert run["bill_usd"]["startup_billed"] == pytest.approx(lives * 3.6 / 3600, rel=1e-6)
        unbilled = lives - sum(w["seconds"]["initializing"] for w in workers)
        assert run["billed_seconds"]["initializing_unbilled"] == pytest.approx(unbilled, rel=1e-6)
        # the shared budget counted the bill (start-up billed: the workers' default)
        assert run["budget_over_bill"] == pytest.approx(1.0, abs=0.1), name
        assert run["cold_starts"] == len(workers) >= 1
        # the projection from the run's own measured timings lands near the ledger's bill (measured:
        # 1.00 and 1.02 of it)
        projected = run["projected_bill_usd"]["startup_billed"]
        assert projected == pytest.approx(run["bill_usd"]["startup_billed"], rel=0.15), (name, run["model"])
        assert run["model"]["engine_start_s"] > 0  # read from the workers' logs
    assert runs["baseline"]["hit_rate"] == 0 and runs["baseline"]["model"]["cache"] is False
    assert runs["frugal"]["hit_rate"] >= 0.5  # both repeats; the sampled request is never cached
    # the frugal worker that serves the late repeat from the cache never starts its engine
    assert runs["frugal"]["worker_seconds"]["engine_start"] < runs["baseline"]["worker_seconds"]["boot"]
    assert runs["frugal"]["bill_usd"]["startup_billed"] < runs["baseline"]["bill_usd"]["startup_billed"]

    # Against counts the replay does not make: the configurations ran one after the other, so the
    # workers in order of start are its ledger lines in order; each line's life against the life
    # /proc showed for its process, and each run's bill and budget against those lives.
    lines = [
        w["exited"] - w["spawned"] for run in result["runs"] for w in sorted(run["workers"], key=lambda w: w["spawned"])
    ]
    print(f"worker lives: ledger {[round(x, 3) for x in lines]}, /proc {[round(x, 3) for x in seen]}")
    assert len(seen) == len(lines) and all(abs(a - b) <= PER_WORKER_SLACK_S for a, b in zip(lines, seen, strict=True))
    at = 0
    for name, run in runs.items():
        count = len(run["workers"])
        outside = sum(seen[at : at + count])
        at += count
        slack = PER_WORKER_SLACK_S * count
        print(f"{name}: bill {run['billed_seconds']['startup_billed']:.3f} s, budget "
              f"{run['budget_spent_seconds']:.3f} s, lives by /proc {outside:.3f} s")  # fmt: skip
        assert run["billed_seconds"]["startup_billed"] == pytest.approx(outside, abs=slack)
        assert run["bill_usd"]["startup_billed"] == pytest.approx(outside * 3.6 / 3600, abs=slack * 3.6 / 3600)
        # the budget: never less than the lives; more by at most each worker's exit allowance
        assert outside <= run["budget_spent_seconds"] <= outside + count * (EXIT_ALLOWANCE_S + 0.5), name
    logs = list((tmp_path / "out" / "logs").glob("*/*.log"))
    assert len(logs) == sum(len(run["workers"]) for run in runs.values())
