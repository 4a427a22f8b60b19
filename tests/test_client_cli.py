"""`python -m client` planning commands: tables, --json, user price files, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from client.__main__ import main
from core.prices import PACKAGED_PRICES

ROOT = Path(__file__).resolve().parent.parent


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_estimate_json_matches_the_hand_worked_seed_example(capsys: pytest.CaptureFixture[str]) -> None:
    # 13.1667 h * 0.44 = 5.79 (see tests/test_planning.py)
    (row,) = run_json(
        capsys,
        "estimate",
        "--gpu",
        "RTX_4090",
        "--requests-per-day",
        "100",
        "--seconds-per-request",
        "5",
        "--cold-starts",
        "hourly",
    )
    assert (row["on_demand_monthly"], row["spot_monthly"]) == (5.79, 2.37)


def test_estimate_table_lists_every_gpu_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["estimate", "--requests-per-day", "10", "--seconds-per-request", "1"]) == 0
    out = capsys.readouterr().out
    assert "NVIDIA RTX A4000" in out and "NVIDIA H200" in out and "$/month spot" in out
    assert "spot rate estimated" in out  # some GPUs have no published spot figure


def test_compare_plan_budget_and_spot(capsys: pytest.CaptureFixture[str]) -> None:
    cmp = run_json(
        capsys,
        "compare",
        "--monthly-requests",
        "100000",
        "--input-tokens",
        "300",
        "--output-tokens",
        "200",
        "--self-hosted-monthly",
        "50",
    )
    assert isinstance(cmp, dict) and cmp["api_monthly"]["gpt-4"] == 1500.0
    plan = run_json(capsys, "plan-budget", "--monthly-budget", "1000", "--gpu", "RTX_4090", "--utilization", "1")
    assert isinstance(plan, dict) and (plan["workers_max"], plan["guaranteed"]) == (3, True)
    spot = run_json(capsys, "spot", "batch_processing", "--gpu", "A100_80GB")
    assert isinstance(spot, dict) and spot["suits_spot"] and spot["spot_hourly"] == 0.76


def test_user_price_file_overrides_the_packaged_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads(PACKAGED_PRICES.read_text())
    for gpu in data["gpus"]:
        if gpu["short_name"] == "RTX_4090":
            gpu["on_demand_hourly"] = 1.0
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(data))
    # 13.1667 h * $1.00 = 13.17
    (row,) = run_json(
        capsys,
        "estimate",
        "--gpu",
        "RTX_4090",
        "--requests-per-day",
        "100",
        "--seconds-per-request",
        "5",
        "--prices",
        str(path),
    )
    assert row["on_demand_monthly"] == 13.17


def test_price_table_env_variable_is_read_by_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text("{not json")
    proc = subprocess.run(
        [sys.executable, "-m", "client", "spot", "training"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PRICE_TABLE": str(path), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert proc.returncode == 2 and "not valid JSON" in proc.stderr and str(path) in proc.stderr


def test_unknown_gpu_and_use_case_exit_2_with_a_clear_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan-budget", "--monthly-budget", "100", "--gpu", "Tesla T4"]) == 2
    assert "unknown GPU 'Tesla T4'" in capsys.readouterr().err
    assert main(["spot", "chatbot"]) == 2
    assert "known:" in capsys.readouterr().err
