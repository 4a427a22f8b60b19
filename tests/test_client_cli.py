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


def test_estimate_json_shows_both_tiers_and_seed004_reproduces_the_seed(capsys: pytest.CaptureFixture[str]) -> None:
    light = ["--requests-per-day", "100", "--seconds-per-request", "5", "--cold-starts", "hourly"]
    # 24 GB class: cheap 13.1667 h * 0.684 = 9.01; reliable 720 h * 1.116 = 803.52 (see tests/test_planning.py)
    (row,) = run_json(capsys, "estimate", "--gpu", "24GB", *light)
    assert (row["cheap"]["monthly"], row["reliable"]["monthly"], row["saving"]) == (9.01, 803.52, 794.51)
    assert row["cheap"]["pools"] == ["AMPERE_24"] and row["reliable"]["active_workers"] == 1
    # seed 004's own figures: on-demand 13.1667 h * 0.44 = 5.79, spot * 0.18 = 2.37
    (seed,) = run_json(capsys, "estimate", "--gpu", "RTX_4090", "--prices", "seed004", *light)
    assert (seed["reliable"]["monthly"], seed["cheap"]["monthly"], seed["saving"]) == (5.79, 2.37, 3.42)
    # two active workers: 1440 h * 1.116 = 1607.04
    (two,) = run_json(capsys, "estimate", "--gpu", "24GB", "--active-workers", "2", *light)
    assert two["reliable"]["monthly"] == 1607.04


def test_estimate_table_lists_every_size_class_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["estimate", "--requests-per-day", "10", "--seconds-per-request", "1"]) == 0
    out = capsys.readouterr().out
    assert "16GB" in out and "180GB" in out and "AMPERE_24" in out and "ADA_24 (of ADA_24, AMPERE_24)" in out
    assert "cheap tier (spot): flex-only" in out and "reliable tier (on-demand): endpoint with active" in out
    assert "estimated" not in out and "discount" not in out


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
    assert isinstance(cmp, dict) and cmp["api_monthly"]["gpt-4"] == 1500.0 and cmp["savings"]["gpt-4"]["yours"] == 1450
    both = run_json(capsys, "compare", "--monthly-requests", "3000", "--input-tokens", "300", "--output-tokens", "200")
    assert isinstance(both, dict) and set(both["self_hosted_monthly"]) == {"cheap", "reliable"}
    seed = ["--prices", "seed004"]
    plan = run_json(capsys, "plan-budget", "--monthly-budget", "1000", "--gpu", "RTX_4090", "--utilization", "1", *seed)
    # seed on-demand: 33.33 / 0.44 = 75.76 h / 24 -> 3 workers, guaranteed (tests/test_planning.py)
    assert isinstance(plan, dict) and (plan["reliable"]["workers_max"], plan["reliable"]["guaranteed"]) == (3, True)
    only = run_json(capsys, "plan-budget", "--monthly-budget", "1000", "--gpu", "24GB", "--tier", "on_demand")
    assert isinstance(only, dict) and list(only) == ["reliable"] and only["reliable"]["fixed_daily_spend"] == 26.78
    spot = run_json(capsys, "spot", "batch_processing", "--gpu", "A100_80GB", "--cold-starts", "24")
    # batch: 1 h tolerance; on the A100 pool (2.736/h): cheap 30 * (500 + 24 * 50) / 3600 = 14.1667 h * 2.736
    # = 38.76; reliable 720 h * 2.736 = 1969.92; saves 1931.16
    assert isinstance(spot, dict) and spot["suits_cheap_tier"]
    (tier,) = spot["tiers"]
    assert (tier["estimate"]["cheap"]["monthly"], tier["estimate"]["saving"]) == (38.76, 1931.16)
    api = run_json(capsys, "spot", "production_api")
    assert isinstance(api, dict) and not api["suits_cheap_tier"] and api["latency_tolerance_s"] == 10
    custom = run_json(capsys, "spot", "nightly-reindex", "--latency-tolerance", "7200", "--batchable")
    assert isinstance(custom, dict) and custom["suits_cheap_tier"] and custom["cold_starts_per_day"] == 12


def test_seed004_table_works_on_every_command_that_takes_prices(capsys: pytest.CaptureFixture[str]) -> None:
    seed = ["--prices", "seed004"]
    assert main(["estimate", "--requests-per-day", "100", "--seconds-per-request", "5", *seed]) == 0
    out = capsys.readouterr().out
    assert "RTX_4090" in out and "n/a" in out  # the A6000 has no spot figure in the seed: unpriced
    assert main(["compare", "--monthly-requests", "3000", "--input-tokens", "1", "--output-tokens", "1", *seed]) == 0
    assert main(["plan-budget", "--monthly-budget", "100", "--gpu", "A100_80GB", *seed]) == 0
    assert main(["spot", "training", "--gpu", "H100_80GB", *seed]) == 0
    assert "seed 004" not in capsys.readouterr().err


def test_user_price_file_overrides_the_packaged_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads(PACKAGED_PRICES.read_text())
    for gpu in data["gpus"]:
        if gpu["id"] == "AMPERE_24":
            gpu["rates"]["flex"]["usd_per_second"] = 1 / 3600  # $1.00 an hour
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(data))
    # 13.1667 h * $1.00 = 13.17
    (row,) = run_json(
        capsys,
        "estimate",
        "--gpu",
        "24GB",
        "--requests-per-day",
        "100",
        "--seconds-per-request",
        "5",
        "--prices",
        str(path),
    )
    assert row["cheap"]["monthly"] == 13.17


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
