"""quantize: AutoAWQ for real on the tiny model (AWQ venv), the bug fix, and the pre-flight refusals.

The tiny model is random, so its perplexities differ only by noise and AWQ cannot be
expected to beat round-to-nearest there (--skip-rtn-comparison); the real model's gate
runs in `make quality`. To make the weight check meaningful, the test model is an
equivalent rescaling of models/tiny (input channels multiplied, the RMSNorm weights divided
by the same factors: same function, uneven column magnitudes, as in trained models).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from builder.manifest import check_files
from core.manifest import read_manifest
from tests.prerequisites import needs_awq, needs_tiny

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "models" / "tiny"
AWQ_PYTHON = ROOT / ".venv-awq" / "bin" / "python"


SKEW = r"""
import shutil, sys, torch
from pathlib import Path
from safetensors.torch import load_file, save_file
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
shutil.copytree(src, dst)
sd = load_file(str(src / "model.safetensors"))
g = torch.Generator().manual_seed(0)
groups = {"input_layernorm": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
          "post_attention_layernorm": ("mlp.gate_proj", "mlp.up_proj")}
for key in list(sd):
    for norm, linears in groups.items():
        if key.endswith(norm + ".weight"):
            f = torch.exp(torch.randn(sd[key].shape, generator=g) * 1.5)
            sd[key] = sd[key] / f
            for lin in linears:
                name = key[: -len(norm + ".weight")] + lin + ".weight"
                sd[name] = sd[name] * f.view(1, -1)
save_file(sd, str(dst / "model.safetensors"), metadata={"format": "pt"})
(dst / "manifest.json").unlink()
"""


def builder(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "builder", *args], cwd=ROOT, text=True, capture_output=True, check=False
    )


@pytest.fixture(scope="module")
def skewed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dst = tmp_path_factory.mktemp("skew") / "tiny-skewed"
    subprocess.run([str(AWQ_PYTHON), "-c", SKEW, str(TINY), str(dst)], check=True)
    return dst


@needs_awq
def test_autoawq_alias_bug_is_fixed() -> None:
    out = subprocess.run(
        [str(AWQ_PYTHON), "-m", "builder.awq_runtime", "selfcheck"],
        cwd=ROOT,
        text=True,
        capture_output=True,
        check=True,
    )
    result = json.loads(out.stdout)
    assert result["upstream_max_change"] > 1e-3  # upstream's "backup" aliases the weights on CPU
    assert result["fixed_max_change"] == 0.0  # ours restores them exactly


@pytest.mark.awq
@needs_awq
@needs_tiny
def test_quantize_tiny_for_real(skewed: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny-awq"
    proc = builder("quantize", str(skewed), "--out", str(out), "--device", "cpu", "--skip-rtn-comparison")
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "awq"
    assert config["quantization_config"]["group_size"] == 64 and config["quantization_config"]["bits"] == 4
    assert config["rope_theta"] == json.loads((TINY / "config.json").read_text())["rope_theta"]
    assert (out / "tokenizer.json").read_bytes() == (TINY / "tokenizer.json").read_bytes()
    report = json.loads((out / "quality_report.json").read_text())
    assert report["gate"]["passed"] and report["quantized_layers"] == 14 and report["scaled_layers"] == 12
    assert report["weight_error_max"] < 0.25
    assert report["weight_error_mean"] < report["rtn_weight_error_mean"]  # AWQ protects the large channels
    assert report["ppl_awq"] / report["ppl_original"] < 1.05
    assert report["calib_texts_dropped"] == 0 and report["heldout_tokens"] > 1000
    manifest = read_manifest(out)
    assert manifest.quantization == "awq" and manifest.extra["quality"]["ppl_awq"] == report["ppl_awq"]
    assert check_files(out, manifest, deep=True) == []
    assert "perplexity on" in proc.stdout


@pytest.mark.awq
@needs_awq
@needs_tiny
def test_gate_catches_the_unfixed_autoawq(skewed: Path, tmp_path: Path) -> None:
    out = tmp_path / "broken"
    proc = builder(
        "quantize", str(skewed), "--out", str(out), "--device", "cpu", "--skip-rtn-comparison", "--upstream-autoawq"
    )
    assert proc.returncode == 1
    assert "quality gate failed" in proc.stderr and "weight reconstruction" in proc.stderr
    assert not out.exists()
    report = json.loads((tmp_path / "broken.quality_report.json").read_text())
    assert report["weight_error_max"] > 0.5 and not report["gate"]["passed"]


@needs_tiny
def test_group_size_refused_before_any_work(tmp_path: Path) -> None:
    model = tmp_path / "m"
    model.mkdir()
    config = json.loads((TINY / "config.json").read_text())
    config.update(hidden_size=576, num_attention_heads=9, head_dim=64, num_key_value_heads=3, intermediate_size=1536)
    (model / "config.json").write_text(json.dumps(config))
    proc = builder(
        "quantize",
        str(model),
        "--out",
        str(tmp_path / "o"),
        "--group-size",
        "128",
        "--awq-python",
        "/nonexistent/python",
    )
    assert proc.returncode == 1
    assert "group size 128 does not divide" in proc.stderr and "fit every layer: 32, 64" in proc.stderr
    config["model_type"] = "gemma"
    (model / "config.json").write_text(json.dumps(config))
    proc = builder("quantize", str(model), "--out", str(tmp_path / "o"), "--awq-python", "/nonexistent/python")
    assert "model_type='gemma'" in proc.stderr
    assert not (tmp_path / "o").exists()


@needs_awq
@needs_tiny
def test_calibration_texts_all_too_long(tmp_path: Path) -> None:
    calib = tmp_path / "calib.txt"
    calib.write_text("word " * 400 + "\n\n" + "more words " * 300)
    proc = builder(
        "quantize",
        str(TINY),
        "--out",
        str(tmp_path / "o"),
        "--calib",
        str(calib),
        "--max-calib-seq-len",
        "64",
        "--device",
        "cpu",
    )
    assert proc.returncode == 1
    assert "no calibration text fits max_calib_seq_len=64" in proc.stderr
