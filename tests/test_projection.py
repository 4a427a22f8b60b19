"""The projection's simulation against timelines worked out by hand (client.replay.projection)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from client.__main__ import main
from client.errors import TraceError
from client.replay.projection import WorkerModel, project, project_month, request_tokens
from client.replay.trace import DETERMINISTIC, TraceEvent, dump_trace

# boot 3 s, engine start 45 s, 10 tokens at 10 tok/s + 0.3 s floor = 1.3 s, idle timeout 5 s, exit 1 s
MODEL = WorkerModel(boot_s=3.0, engine_start_s=45.0, tokens_per_second=10.0, request_floor_s=0.3, hit_s=0.05,
                    exit_s=1.0, idle_timeout=5.0)  # fmt: skip


def ask(at: float, prompt: str = "a", deterministic: bool = True) -> TraceEvent:
    job = {"prompt": prompt, "sampling_params": {"max_tokens": 10, "temperature": 0.0}}
    return TraceEvent(at, job, (DETERMINISTIC,) if deterministic else ())


def test_one_request_lazy() -> None:
    """spawn 0, boot to 3, engine 3-48 (holding the job: running), answer 49.3, idle to 54.3, exit 55.3."""
    p = project([ask(0.0)], MODEL)
    assert p.seconds_by_state == pytest.approx({"initializing": 3.0, "running": 46.3, "idle": 6.0})
    assert p.seconds_by_kind == pytest.approx({"boot": 3.0, "engine_start": 45.0, "jobs": 1.3, "idle": 6.0})
    assert (p.workers_started, p.engine_starts, p.hits) == (1, 1, 0)
    assert p.latency_p50 == pytest.approx(49.3)
    assert p.billed_seconds(True) == pytest.approx(55.3) and p.billed_seconds(False) == pytest.approx(52.3)
    assert p.bill_usd(3.6, True) == pytest.approx(0.0553)  # $3.6/h is a tenth of a cent per second


def test_one_request_boot() -> None:
    """ENGINE_START=boot: the engine's 45 s are spent initializing, unbilled where Initializing is."""
    p = project([ask(0.0)], MODEL.replace(engine_start="boot"))
    assert p.seconds_by_state == pytest.approx({"initializing": 48.0, "running": 1.3, "idle": 6.0})
    assert p.billed_seconds(False) == pytest.approx(7.3)
    assert p.latency_p50 == pytest.approx(49.3)


def test_single_flight_hits_and_a_cold_worker_that_never_starts_its_engine() -> None:
    """The repeat at 10 s waits for the first answer (49.3) and is a hit 0.05 s later; the worker stops
    at 54.35 and exits at 55.35; the repeat at 60 s starts a new worker (boot to 63) answered from the
    cache at 63.05, which idles 5 s and exits at 69.05 with no engine."""
    p = project([ask(0.0), ask(10.0), ask(60.0)], MODEL)
    assert (p.workers_started, p.engine_starts, p.hits, p.misses) == (2, 1, 2, 1)
    assert p.billed_seconds(True) == pytest.approx(55.35 + 9.05)
    assert p.seconds_by_kind["engine_start"] == pytest.approx(45.0)
    assert p.seconds_by_kind["boot"] == pytest.approx(6.0)
    without_cache = project([ask(0.0), ask(10.0), ask(60.0)], MODEL.replace(cache=False))
    assert (without_cache.hits, without_cache.engine_starts) == (0, 2)
    sampled = project([ask(0.0, deterministic=False), ask(10.0, deterministic=False)], MODEL)
    assert sampled.hits == 0  # never answered from the cache


def test_queue_delay_starts_a_second_worker_for_an_overdue_job() -> None:
    """COLD_CONCURRENCY=1: the second job waits in the queue; 4 s later (QUEUE_DELAY) a second worker starts."""
    model = MODEL.replace(cold_concurrency=1, cache=False)
    p = project([ask(0.0, "a"), ask(1.0, "b")], model)
    assert p.workers_started == 2 and p.engine_starts == 2
    # worker 2: started at 5, boot to 8, engine to 53, answer 54.3, idle to 59.3, exit 60.3
    assert p.billed_seconds(True) == pytest.approx(55.3 + 55.3)
    one_worker = project([ask(0.0, "a"), ask(1.0, "b")], model.replace(workers_max=1))
    # the second job waits for the first (49.3) then runs on the warm engine: 50.6, idle to 55.6, exit 56.6
    assert (one_worker.workers_started, one_worker.billed_seconds(True)) == (1, pytest.approx(56.6))


def test_workers_min_bills_to_the_horizon_and_a_month_scales() -> None:
    p = project([ask(0.0)], MODEL.replace(workers_min=1), horizon_s=100.0)
    assert p.billed_seconds(True) == pytest.approx(100.0)  # never stopped: billed until the horizon
    month = project_month([ask(0.0)], MODEL, trace_days=0.5, days=30)
    assert month.billed_seconds(True) == pytest.approx(55.3 * 60) and month.requests == 60
    assert month.latency_p50 == pytest.approx(49.3)  # latencies are not scaled


def test_tokens_of_each_input_shape() -> None:
    assert request_tokens({"prompt": "x", "sampling_params": {"max_tokens": 7, "n": 3}}, 256) == 21
    assert request_tokens({"prompt": "x"}, 256) == 256
    assert request_tokens({"openai_route": "/v1/completions", "openai_input": {"max_tokens": 5}}, 256) == 5
    batch = {"requests": [{"prompt": "a", "sampling_params": {"max_tokens": 2}}, {"prompt": "b"}]}
    assert request_tokens(batch, 10) == 12
    with pytest.raises(TraceError, match="max_tokens must be a whole number >= 1"):
        request_tokens({"prompt": "x", "sampling_params": {"max_tokens": 0}}, 256)


def test_bad_models_and_traces_are_named() -> None:
    with pytest.raises(ValueError, match="tokens_per_second must be a number > 0"):
        WorkerModel(tokens_per_second=0)
    with pytest.raises(ValueError, match=r"workers_min \(4\) must be <= workers_max \(3\)"):
        WorkerModel(workers_min=4, workers_max=3)
    with pytest.raises(ValueError, match="engine_start must be one of"):
        WorkerModel(engine_start="eager")
    with pytest.raises(TraceError, match="trace event 2: 'at' 1 is before"):
        project([ask(5.0), ask(1.0)], MODEL)
    with pytest.raises(TraceError, match="no events"):
        project([], MODEL)


def test_estimate_a_trace_for_a_month(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`client estimate --trace`: the one-request day of test_one_request_lazy, 30 times, at $0.44/h."""
    dump_trace([ask(0.0)], tmp_path / "t.jsonl")
    flags = ["--boot-seconds", "3", "--engine-start-seconds", "45", "--tokens-per-second", "10",
             "--hit-seconds", "0.05", "--idle-timeout", "5"]  # fmt: skip
    assert main(["estimate", "--trace", str(tmp_path / "t.jsonl"), *flags, "--gpu", "RTX_4090", "--json"]) == 0
    out = orjson.loads(capsys.readouterr().out)
    (bill,) = out["bills"]
    assert out["trace_days"] == 1 and out["projection"]["requests"] == 30
    assert bill["startup_billed"] == pytest.approx(55.3 * 30 * bill["hourly"] / 3600)
    assert bill["initializing_unbilled"] == pytest.approx(52.3 * 30 * bill["hourly"] / 3600)
    assert main(["estimate", "--trace", str(tmp_path / "t.jsonl"), "--tokens-per-second", "-1"]) == 2
    assert "tokens_per_second must be a number > 0" in capsys.readouterr().err
    assert main(["estimate", "--gpu", "RTX_4090"]) == 2
    assert "give --requests-per-day and --seconds-per-request, or --trace FILE" in capsys.readouterr().err


def test_engines_starting_together_slow_each_other_where_workers_share_a_machine() -> None:
    """Two warm workers boot at 0 and start their engines at 3 s: the second, beside the first, takes
    45 x (1 + 0.5) = 67.5 s (the local platform's workers share one CPU; on RunPod the contention is 0)."""
    model = MODEL.replace(engine_start="boot", workers_min=2, start_contention=0.5)
    p = project([ask(0.0)], model, horizon_s=100.0)
    assert p.seconds_by_kind["engine_start"] == pytest.approx(45.0 + 67.5)
    assert project([ask(0.0)], model.replace(start_contention=0.0), horizon_s=100.0).seconds_by_kind[
        "engine_start"
    ] == pytest.approx(90.0)
