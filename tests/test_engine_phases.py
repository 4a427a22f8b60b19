"""The phases of an engine start, from vLLM 0.32's log lines (as the CPU build printed them here)."""

from __future__ import annotations

import pytest

from handler.engine_phases import StartPhases

COMPILED = [
    (3.1, "INFO 12-02 07:05:12 [api_server.py:1400] vLLM API server version 0.32.0"),
    (9.8, "INFO 12-02 07:05:19 [cpu_model_runner.py:68] Starting to load model /models/smollm2..."),
    (12.4, "INFO 12-02 07:05:21 [default_loader.py:502] Loading weights took 2.31 seconds"),
    (12.5, "INFO 12-02 07:05:21 [cpu_model_runner.py:80] Model loading took 0.50 GiB memory and 2.52 seconds"),
    (70.2, "INFO 12-02 07:06:19 [monitor.py:34] torch.compile took 41.70 s in total"),
    (84.0, "INFO 12-02 07:06:33 [core.py:396] init engine (profile, create kv cache, warmup model) took 71.3 s "
           "(compilation: 41.70 s)"),
    (86.5, "INFO 12-02 07:06:35 [launcher.py:40] Application startup complete."),
]  # fmt: skip


def test_a_compiled_start_splits_into_its_phases() -> None:
    phases = StartPhases()
    for at, line in COMPILED:
        phases.feed(at, line)
    report = phases.report(total_s=87.0)
    assert report == {
        "process_and_imports_s": 9.8,
        "weights_s": 2.52,  # "Model loading" (the later, larger figure) wins over "Loading weights"
        "compile_s": 41.7,
        "kv_cache_and_warmup_s": pytest.approx(29.6),
        "server_to_health_s": 3.0,
        "total_s": 87.0,
    }


def test_an_eager_start_has_no_compile_phase() -> None:
    phases = StartPhases()
    phases.feed(8.0, "Starting to load model /models/tiny...")
    phases.feed(9.0, "Model loading took 0.01 GiB memory and 0.40 seconds")
    phases.feed(20.0, "init engine (profile, create kv cache, warmup model) took 10.50 s")
    report = phases.report(total_s=22.0)
    assert "compile_s" not in report and report["kv_cache_and_warmup_s"] == 10.5
    assert StartPhases().report(total_s=5.0) == {"total_s": 5.0}  # a log that told nothing
