"""The worker's hourly rate (handler.rates): GPU_HOURLY_RATE, else the GPU it really got, else GPU_TYPE.

Figures are checked against core/data/prices.json read here on its own (not through core.prices).
"""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest

from handler import rates
from handler.rates import hourly_rate
from handler.settings import REPO_ROOT, BudgetSettings, load_settings

PRICES = json.loads((REPO_ROOT / "core" / "data" / "prices.json").read_text(encoding="utf-8"))

RTX_4090 = "NVIDIA GeForce RTX 4090"  # pool ADA_24
RTX_A5000 = "NVIDIA RTX A5000"  # pool AMPERE_24
L4 = "NVIDIA L4"  # pool AMPERE_24 too


def table_hourly(gpu_name: str) -> float:
    """USD per hour of one GPU named `gpu_name`, at the table's worker rate, read straight from the JSON."""
    (entry,) = [g for g in PRICES["gpus"] if gpu_name in g["gpus"]]
    return float(entry["rates"][PRICES["worker_rate"]]["usd_per_second"]) * 3600


def budget(**env: str) -> BudgetSettings:
    return load_settings(env).budget


def warnings_naming(caplog: pytest.LogCaptureFixture, *names: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "handler.rates" and r.levelno == logging.WARNING and all(n in r.getMessage() for n in names)
    ]


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Each test starts with no warning logged yet (they are logged once per process)."""
    monkeypatch.setattr(rates, "_warned", set(), raising=False)
    caplog.set_level(logging.WARNING, logger="handler.rates")


def test_gpu_hourly_rate_is_the_whole_workers_price_and_is_not_multiplied() -> None:
    # 2.5 USD per worker-hour for a worker of 3 GPUs is 2.5, not 7.5; it wins over a detected GPU and GPU_TYPE
    settings = budget(GPU_HOURLY_RATE="2.5", TENSOR_PARALLEL_SIZE="3", GPU_TYPE=RTX_A5000)
    assert hourly_rate(settings, detected=RTX_4090) == 2.5
    assert hourly_rate(settings, detected="") == 2.5
    assert rates.gpu_hourly_rate(settings, detected=RTX_4090) == pytest.approx(2.5 / 3)  # its share per GPU


def test_the_detected_gpu_wins_over_gpu_type_and_each_gpu_is_billed(caplog: pytest.LogCaptureFixture) -> None:
    # the case means something only if the table prices a 4090 and an A5000 apart
    assert table_hourly(RTX_4090) == pytest.approx(0.00031 * 3600)  # ADA_24, flex
    assert table_hourly(RTX_A5000) == pytest.approx(0.00019 * 3600)  # AMPERE_24, flex
    # asked for as an A5000, got a 4090 (a pool's second choice), on 2 GPUs:
    # 2 x 0.00031 USD/s x 3600 s/h = 2 x 1.116 = 2.232 USD per worker-hour
    settings = budget(GPU_TYPE=RTX_A5000, TENSOR_PARALLEL_SIZE="2")
    assert hourly_rate(settings, detected=RTX_4090) == pytest.approx(2.232)
    assert hourly_rate(settings, detected=RTX_4090) == pytest.approx(2 * table_hourly(RTX_4090))
    # the mismatch is logged once, naming both
    assert len(warnings_naming(caplog, RTX_A5000, RTX_4090)) == 1


def test_a_gpu_type_of_the_detected_gpus_pool_is_no_mismatch(caplog: pytest.LogCaptureFixture) -> None:
    settings = budget(GPU_TYPE="AMPERE_24")  # the pool's id; RunPod gave an L4 from it
    assert hourly_rate(settings, detected=L4) == pytest.approx(table_hourly(L4))
    settings = budget(GPU_TYPE="RTX_4090")  # an alias of the GPU detected
    assert hourly_rate(settings, detected=RTX_4090) == pytest.approx(table_hourly(RTX_4090))
    assert warnings_naming(caplog) == []
    # ... while a GPU_TYPE of another pool is
    assert hourly_rate(budget(GPU_TYPE="AMPERE_24"), detected=RTX_4090) == pytest.approx(table_hourly(RTX_4090))
    assert len(warnings_naming(caplog, "AMPERE_24", RTX_4090)) == 1


def test_gpu_type_is_the_fallback(caplog: pytest.LogCaptureFixture) -> None:
    settings = budget(GPU_TYPE=RTX_A5000, TENSOR_PARALLEL_SIZE="2")
    # nothing detected (CPU, no nvidia-smi): GPU_TYPE, each GPU billed
    assert hourly_rate(settings, detected="") == pytest.approx(2 * table_hourly(RTX_A5000))
    assert warnings_naming(caplog) == []
    # a GPU the table does not know: GPU_TYPE, and the log says so, naming both
    assert hourly_rate(settings, detected="Imaginary GPU 9000") == pytest.approx(2 * table_hourly(RTX_A5000))
    assert len(warnings_naming(caplog, "Imaginary GPU 9000", RTX_A5000)) == 1


def fake_nvidia_smi(directory: Path, name: str) -> Path:
    """An executable `nvidia-smi` in `directory` that prints `name` (as `--query-gpu=name` does) and logs its args."""
    called = directory / "called"
    script = directory / "nvidia-smi"
    script.write_text(f'#!/bin/sh\necho "$@" >> "{called}"\necho "{name}"\n', encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return called


def test_the_gpu_nvidia_smi_names_is_priced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    called = fake_nvidia_smi(tmp_path, RTX_4090)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    assert rates.detected_gpu_name() == RTX_4090
    settings = budget(GPU_TYPE=RTX_A5000, TENSOR_PARALLEL_SIZE="2")
    assert hourly_rate(settings) == pytest.approx(2 * table_hourly(RTX_4090))  # detected=None: nvidia-smi is asked
    assert "--query-gpu=name" in called.read_text(encoding="utf-8").splitlines()[-1]
    assert len(warnings_naming(caplog, RTX_A5000, RTX_4090)) == 1
