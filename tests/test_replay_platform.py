"""`python -m client replay` end to end: a short trace through two configurations of the real worker
on the local platform (the tiny model, eager start), the summary checked against its own ledger lines,
the budget's count and the projection."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from client.replay.trace import DETERMINISTIC, REPEAT, TraceEvent, dump_trace
from tests.prerequisites import needs_engine_venv, needs_tiny

pytestmark = [pytest.mark.engine, pytest.mark.redis, needs_tiny, needs_engine_venv]
REPO = Path(__file__).resolve().parents[1]


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
    shared = ["ENGINE_EXTRA_ARGS=--enforce-eager", "workers_max=1", "idle_timeout=3", "container_start_delay=0.5"]
    command = [
        sys.executable, "-m", "client", "replay", "--trace", str(tmp_path / "trace.jsonl"), "--model", "tiny",
        "--config", "baseline", *shared, "--config", "frugal", *shared,
        "--redis-url", redis_url, "--gpu-price", "3.6", "--out", str(tmp_path / "out"), "--json",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    result = orjson.loads(done.stdout)
    assert result == orjson.loads((tmp_path / "out" / "summary.json").read_bytes()) | {"chart": result["chart"]}
    assert Path(result["chart"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result["answer_mismatches"] == []
    runs = {run["name"]: run for run in result["runs"]}
    for name, run in runs.items():
        assert run["answered"] == len(TRACE) and run["failures"] == {}, (name, run["failures"])
        workers = run["workers"]
        # the bill is every worker's life from its start to its exit, whatever the states say
        lives = sum(w["exited"] - w["spawned"] for w in workers)
        assert run["billed_seconds"]["startup_billed"] == pytest.approx(lives, rel=1e-6)
        assert run["bill_usd"]["startup_billed"] == pytest.approx(lives * 3.6 / 3600, rel=1e-6)
        unbilled = lives - sum(w["seconds"]["initializing"] for w in workers)
        assert run["billed_seconds"]["initializing_unbilled"] == pytest.approx(unbilled, rel=1e-6)
        # the shared budget counted the bill (start-up billed: the workers' default)
        assert run["budget_over_bill"] == pytest.approx(1.0, abs=0.1), name
        assert run["cold_starts"] == len(workers) >= 1
        # the projection from the run's own measured timings lands near the ledger's bill
        projected = run["projected_bill_usd"]["startup_billed"]
        assert projected == pytest.approx(run["bill_usd"]["startup_billed"], rel=0.3), (name, run["model"])
        assert run["model"]["engine_start_s"] > 0  # read from the workers' logs
    assert runs["baseline"]["hit_rate"] == 0 and runs["baseline"]["model"]["cache"] is False
    assert runs["frugal"]["hit_rate"] >= 0.5  # both repeats; the sampled request is never cached
    # the frugal worker that serves the late repeat from the cache never starts its engine
    assert runs["frugal"]["worker_seconds"]["engine_start"] < runs["baseline"]["worker_seconds"]["boot"]
    assert runs["frugal"]["bill_usd"]["startup_billed"] < runs["baseline"]["bill_usd"]["startup_billed"]
    logs = list((tmp_path / "out" / "logs").glob("*/*.log"))
    assert len(logs) == sum(len(run["workers"]) for run in runs.values())
