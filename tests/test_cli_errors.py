"""Every CLI reports a typed error the same way (`core.cli`): one `error: ...` line on stderr, a non-zero
exit, no traceback. Run as a user runs them: `python -m ...` in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.cli import run_command

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
PYTHON = str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("PRICE_TABLE", "REDIS_URL")}
    return subprocess.run(
        [PYTHON, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**base, **env},
        timeout=120,
        check=False,
    )


def assert_one_error_line(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def bad_prices(tmp_path: Path) -> Path:
    path = tmp_path / "prices.json"
    path.write_text("{not json", encoding="utf-8")
    return path


def test_builder_right_size_with_a_bad_price_file(tmp_path: Path, bad_prices: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_type": "llama", "hidden_size": 64}), encoding="utf-8")
    proc = cli("builder", "right-size", str(config), "--prices", str(bad_prices))
    assert_one_error_line(proc, 1, str(bad_prices), "not valid JSON")
    assert proc.stdout == ""


def test_client_with_a_bad_price_file(bad_prices: Path) -> None:
    proc = cli("client", "plan-budget", "--monthly-budget", "100", "--gpu", "RTX_4090", "--prices", str(bad_prices))
    assert_one_error_line(proc, 2, str(bad_prices), "not valid JSON")


def test_client_with_an_unknown_gpu() -> None:
    proc = cli("client", "plan-budget", "--monthly-budget", "100", "--gpu", "Tesla T4")
    assert_one_error_line(proc, 2, "unknown GPU 'Tesla T4'")


def test_handler_stats_with_a_bad_redis_url() -> None:
    proc = cli("handler.stats", "spend", REDIS_URL="http://127.0.0.1:6379/0")
    assert_one_error_line(proc, 2, "REDIS_URL")
    assert proc.stdout == ""


def test_handler_samples_with_a_bad_setting() -> None:
    proc = cli("handler.samples", "sample_jobs", DAILY_BUDGET_USD="abc")
    assert_one_error_line(proc, 2, "DAILY_BUDGET_USD")
    assert proc.stdout == ""  # refused before any model is read or any job is run


def test_a_bad_command_line_is_argparse_usage_with_exit_2() -> None:
    proc = cli("handler.stats", "spend", "--days", "0")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("usage: python -m handler.stats") and "--days must be at least 1" in proc.stderr


class PartError(Exception):
    pass


def test_run_command_reports_only_the_errors_it_is_given(capsys: pytest.CaptureFixture[str]) -> None:
    def broken() -> int:
        raise PartError("the price table has no GPU 'X'")

    assert run_command(lambda: 0, (PartError,)) == 0
    assert run_command(lambda: 3, (PartError,)) == 3
    assert run_command(broken, (PartError,)) == 1
    assert run_command(broken, (PartError,), code=2) == 2
    assert capsys.readouterr().err == "error: the price table has no GPU 'X'\n" * 2

    def bug() -> int:
        raise KeyError("not a typed error")

    with pytest.raises(KeyError):  # a bug keeps its traceback
        run_command(bug, (PartError,))
    with pytest.raises(ValueError, match="non-zero"):
        run_command(broken, (PartError,), code=0)
