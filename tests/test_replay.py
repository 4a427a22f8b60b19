"""The replay's pure parts: traces, the profiles' generator, configurations, summaries, measurements."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.errors import TraceError
from client.replay.configs import PRESETS, build_config, build_configs
from client.replay.measure import (
    WORKER_DEFAULTS,
    engine_starts_in_log,
    model_of,
    settings_model,
    start_fit,
    timings,
)
from client.replay.profiles import PROFILES, compress_gaps, generate
from client.replay.summary import JobRecord, RunSummary, WorkerLine, answer_mismatches, percentile
from client.replay.trace import DETERMINISTIC, REPEAT, TraceEvent, dump_trace, load_trace, parse_trace
from handler.settings import load_settings

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- traces


def test_a_trace_round_trips_and_bad_lines_are_named(tmp_path: Path) -> None:
    events = [TraceEvent(0.0, {"prompt": "a"}), TraceEvent(2.5, {"prompt": "b"}, (DETERMINISTIC,))]
    dump_trace(events, tmp_path / "t.jsonl")
    assert load_trace(tmp_path / "t.jsonl") == events
    cases = {
        '{"at": 0, "input": {"prompt": "a"}}\nnot json': "t line 2: not JSON",
        '{"at": -1, "input": {"prompt": "a"}}': "t line 1: 'at' must be a number of seconds >= 0",
        '{"at": 1, "input": {}}': "'input' must be a non-empty JSON object",
        '{"at": 1, "input": {"prompt": "a"}, "when": 3}': "unknown field\\(s\\) when",
        '{"at": 1, "input": {"prompt": "a"}, "tags": [1]}': "'tags' must be a list of non-empty strings",
        '{"at": 5, "input": {"prompt": "a"}}\n{"at": 4, "input": {"prompt": "b"}}': "line 2: 'at' 4 is before",
        "\n\n": "t: no events",
    }
    for text, problem in cases.items():
        with pytest.raises(TraceError, match=problem):
            parse_trace(text.splitlines(), name="t")
    with pytest.raises(TraceError, match="No such file"):
        load_trace(tmp_path / "missing.jsonl")


def test_compress_shortens_only_quiet_gaps() -> None:
    # gaps 1, 1, 998, 1: only the 998 s one is longer than 30 s; it becomes max(30, 99.8)
    assert compress_gaps([0, 1, 2, 1000, 1001], 10, 30) == pytest.approx([0, 1, 2, 101.8, 102.8])
    assert compress_gaps([0, 100], 10, 30) == pytest.approx([0, 30])  # never below the quiet gap
    with pytest.raises(TraceError, match="compress must be >= 1"):
        compress_gaps([0, 1], 0.5, 30)


def test_the_light_profile_over_a_day() -> None:
    events = generate("light", hours=24, seed=3)
    assert len(events) == PROFILES["light"].requests_per_day
    assert all(e.input["sampling_params"]["max_tokens"] == 100 for e in events)  # 5 s at SmolLM2's 20 tok/s
    repeats = [e for e in events if REPEAT in e.tags]
    assert len(repeats) == pytest.approx(30, abs=3)  # 30% by default (none before the first greedy one)
    earlier: list[dict[str, object]] = []
    for e in events:
        if REPEAT in e.tags:
            assert e.input in earlier  # the same input as an earlier deterministic request
        elif e.deterministic:
            earlier.append(e.input)
        greedy = e.input["sampling_params"]["temperature"] == 0.0
        assert greedy == e.deterministic
    fresh = [e.input["prompt"] for e in events if REPEAT not in e.tags]
    assert len(set(fresh)) == len(fresh)  # real, different prompts
    starts = [e.at for i, e in enumerate(events) if i == 0 or e.at - events[i - 1].at > 600]
    assert len(starts) == 24  # hourly bursts: a cold start each
    assert generate("light", hours=24, seed=3) == events  # a seed gives the same trace


def test_compression_keeps_every_burst_and_its_inner_gaps() -> None:
    slow = generate("medium", hours=3, seed=1)
    fast = generate("medium", hours=3, compress=60, quiet_gap=30, seed=1)
    assert [e.input for e in fast] == [e.input for e in slow]
    inner = [(b.at - a.at, d.at - c.at) for a, b, c, d in zip(slow, slow[1:], fast, fast[1:], strict=False)]
    for gap_slow, gap_fast in inner:
        assert gap_fast == pytest.approx(gap_slow if gap_slow <= 30 else max(30, gap_slow / 60))
    assert fast[-1].at < slow[-1].at / 5  # three 300 s bursts kept, the two quiet hours cut to a minute
    with pytest.raises(TraceError, match="give --tokens-per-second"):
        generate("light", model="other")
    with pytest.raises(TraceError, match="unknown profile"):
        generate("busy")


# ---------------------------------------------------------------- configurations


def test_presets_and_variants() -> None:
    assert [c.name for c in build_configs([])] == ["baseline", "frugal"]
    assert PRESETS["baseline"].worker_env["ENGINE_START"] == "boot"
    assert PRESETS["baseline"].worker_env["CACHE_ENABLED"] == "false"
    assert PRESETS["frugal"].worker_env == {}  # the worker's own defaults
    variant = build_config("eager", ["ENGINE_EXTRA_ARGS=--enforce-eager", "idle_timeout=10", "from=baseline"])
    assert variant.worker_env["ENGINE_START"] == "boot" and variant.worker_env["ENGINE_EXTRA_ARGS"] == "--enforce-eager"
    assert variant.endpoint["idle_timeout"] == 10.0 and variant.endpoint["workers_max"] == 3
    assert build_config("unbilled", ["BILL_INITIALIZING=false"]).worker_env == {"BILL_INITIALIZING": "false"}
    problems = {
        ("x", ("workers_max=lots",)): "workers_max: 'lots' is not a int",
        ("x", ("colour=red",)): "unknown key 'colour'",
        ("x", ("from=nothing",)): "from='nothing' is not one of",
        ("x", ("IDLE",)): "'IDLE' is not KEY=VALUE",
        ("Bad Name", ()): "use lower-case letters",
    }
    for (name, pairs), problem in problems.items():
        with pytest.raises(TraceError, match=problem):
            build_config(name, pairs)
    with pytest.raises(TraceError, match="config names repeat"):
        build_configs([["a"], ["a", "idle_timeout=3"]])


# ---------------------------------------------------------------- summaries


def answer(text: str, cached: bool = False, engine_ms: float = 0.0) -> dict[str, object]:
    return {"text": text, "cached": cached, "timings": {"engine_start_ms": engine_ms}}


def run_of(name: str, texts: list[str], config: dict[str, object] | None = None) -> RunSummary:
    workers = [
        WorkerLine("w1", 0.0, 5.0, 60.0, {"initializing": 5.0, "running": 40.0, "idle": 15.0}, 3, "idle", 58.5,
                   (30.0,)),
        WorkerLine("w2", 70.0, 73.0, 80.0, {"initializing": 3.0, "running": 1.0, "idle": 6.0}, 1, "idle", 79.0),
    ]  # fmt: skip
    jobs = [
        JobRecord(0, 0.0, 0.0, 41.0, "COMPLETED", answer(texts[0], engine_ms=30_000.0), None, "w1", 36.3),
        JobRecord(1, 1.0, 1.0, 45.0, "COMPLETED", answer(texts[1]), None, "w1", 4.3),
        JobRecord(2, 2.0, 2.0, 46.0, "COMPLETED", answer(texts[0], cached=True), None, "w1", 0.1),
        JobRecord(3, 72.0, 72.0, 73.5, "COMPLETED", answer(texts[0], cached=True), None, "w2", 0.3),
        JobRecord(4, 73.0, 73.0, 74.0, "FAILED", None, "budget_exceeded", "w2", 0.2),
    ]
    budget = {"boot": 8.0, "engine_start": 30.0, "jobs": 10.0, "idle": 21.0}
    return RunSummary(name, 3.6, workers, jobs, budget, True, config or {"worker_env": {}, "endpoint": {}})


TRACE = [
    TraceEvent(0.0, {"prompt": "a", "sampling_params": {"max_tokens": 60}}, (DETERMINISTIC,)),
    TraceEvent(1.0, {"prompt": "b", "sampling_params": {"max_tokens": 80}}),
    TraceEvent(2.0, {"prompt": "a", "sampling_params": {"max_tokens": 60}}, (DETERMINISTIC, REPEAT)),
    TraceEvent(72.0, {"prompt": "a", "sampling_params": {"max_tokens": 60}}, (DETERMINISTIC, REPEAT)),
    TraceEvent(73.0, {"prompt": "c", "sampling_params": {"max_tokens": 8}}),
]


def test_the_bill_and_the_callers_figures_by_hand() -> None:
    run = run_of("frugal", ["A", "B"])
    assert run.billed_seconds("startup_billed") == pytest.approx(70.0)  # 60 + 10 s of life
    assert run.billed_seconds("initializing_unbilled") == pytest.approx(62.0)
    assert run.bill_usd("startup_billed") == pytest.approx(0.07)
    assert run.budget_over_bill() == pytest.approx(69.0 / 70.0)
    assert run.hit_rate() == pytest.approx(0.5)  # 2 of 4 answers
    assert run.failures() == {"budget_exceeded": 1}
    assert run.latency() == {"p50": pytest.approx(41.0), "p95": pytest.approx(44.0), "p99": pytest.approx(44.0)}
    assert percentile([], 50) != percentile([], 50)  # nan when nothing was answered
    with pytest.raises(ValueError, match="rule 'both'"):
        run.billed_seconds("both")


def test_answers_of_deterministic_requests_must_agree() -> None:
    same = [run_of("baseline", ["A", "B"]), run_of("frugal", ["A", "other B"])]
    assert answer_mismatches(TRACE, same) == []  # b is sampled: its text may differ
    differ = [run_of("baseline", ["A", "B"]), run_of("frugal", ["A2", "B"])]
    (problem,) = answer_mismatches(TRACE, differ)
    assert problem.startswith("request #0 got 2 different answers")


# ---------------------------------------------------------------- measurements


def test_the_models_defaults_are_the_workers() -> None:
    s = load_settings({})
    assert (
        WORKER_DEFAULTS["ENGINE_START"] == s.engine_start
        and int(WORKER_DEFAULTS["MAX_CONCURRENCY"]) == s.max_concurrency
    )
    assert int(WORKER_DEFAULTS["COLD_CONCURRENCY"]) == s.cold_concurrency
    assert (
        int(WORKER_DEFAULTS["CACHE_TTL"]) == s.cache_ttl
        and int(WORKER_DEFAULTS["DEFAULT_MAX_TOKENS"]) == s.default_max_tokens
    )
    assert (WORKER_DEFAULTS["CACHE_ENABLED"] == "true") == s.cache_enabled
    assert (WORKER_DEFAULTS["BILL_INITIALIZING"] == "true") == s.bill_initializing
    endpoint = PRESETS["frugal"].endpoint
    assert settings_model({}, endpoint)["engine_start"] == "lazy"
    assert settings_model({"BILL_INITIALIZING": "false"}, endpoint)["engine_start"] == "boot"  # auto, as the worker
    assert settings_model(PRESETS["baseline"].worker_env, endpoint)["cache"] is False


def test_timings_measured_by_hand() -> None:
    log = "x engine ready: {'process_and_imports_s': 20.1, 'total_s': 31.5}\nother\nengine ready: {'total_s': 28.5}"
    assert engine_starts_in_log(log) == [31.5, 28.5]
    run = run_of("frugal", ["A", "B"], PRESETS["frugal"].to_dict())
    got = timings(run, TRACE, floor_s=0.3)
    # boot: ready - spawned = 5 and 3 -> 4; exit: 60-58.5 and 80-79 -> 1.25; hits 0.1 and 0.3: the quickest
    # misses: (60 + 80 tokens) over (36.3 - 30 - 0.3) + (4.3 - 0.3) s = 140 / 10 = 14 tok/s
    assert got == {"boot_s": 4.0, "engine_start_s": 30.0, "start_contention": 0.0, "exit_s": 1.25, "hit_s": 0.1,
                   "tokens_per_second": 14.0}  # fmt: skip
    model = model_of(run, TRACE)
    assert (model.boot_s, model.tokens_per_second, model.cache, model.engine_start) == (4.0, 14.0, True, "lazy")
    # ENGINE_START=boot: a worker's first job-take waits for its engine: its own start, else the median one
    lines = [WorkerLine("w1", 0.0, 34.0, 50.0, {}, 1, "idle", 49.0, (31.0,)),
             WorkerLine("w2", 10.0, 42.0, 60.0, {}, 1, "idle", 59.0)]  # fmt: skip
    booted = RunSummary("baseline", 3.6, lines, [], {}, True, PRESETS["baseline"].to_dict())
    assert timings(booted, TRACE, floor_s=0.3) == {"boot_s": 2.0, "engine_start_s": 31.0, "start_contention": 0.0,
                                                   "exit_s": 1.0}  # fmt: skip


def test_engine_starts_fitted_alone_and_side_by_side() -> None:
    """Boot mode: starts began at 3 (alone), 10 (beside one) and 20 s (beside two) and took 40, 60 and
    80 s: 40 s alone, half as long again per other start under way."""
    lines = [WorkerLine("w1", 0.0, 43.0, 50.0, {}, 1, "idle", 49.0, (40.0,)),
             WorkerLine("w2", 7.0, 70.0, 80.0, {}, 1, "idle", 79.0, (60.0,)),
             WorkerLine("w3", 17.0, 100.0, 110.0, {}, 1, "idle", 109.0, (80.0,))]  # fmt: skip
    alone, contention = start_fit(lines, "boot")
    assert (alone, contention) == (pytest.approx(40.0), pytest.approx(0.5))
    assert start_fit(lines[:1], "boot") == (40.0, 0.0)  # nothing beside it: no slowdown to fit
    assert start_fit([], "lazy") == (None, 0.0)


def test_the_charting_library_stays_out_of_the_worker() -> None:
    worker = (REPO / "requirements.txt").read_text().lower()
    assert "matplotlib" not in worker
    assert "matplotlib" in (REPO / "requirements-tools.txt").read_text()
    assert "-r requirements-tools.txt" in (REPO / "requirements-dev.txt").read_text()
