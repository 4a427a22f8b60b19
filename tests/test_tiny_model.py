"""builder tiny-model: deterministic, vLLM-compatible shape, working tokenizer and chat template.

The command needs torch, so it runs in the engine venv (a subprocess); checks on the files
run here.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from builder.manifest import check_files
from core.manifest import read_manifest
from tests.prerequisites import needs_engine_venv

REPO = Path(__file__).resolve().parents[1]
ENGINE_PY = REPO / ".venv-engine" / "bin" / "python"

pytestmark = needs_engine_venv

CHECK_SCRIPT = """
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
folder = sys.argv[1]
tok = AutoTokenizer.from_pretrained(folder)
model = AutoModelForCausalLM.from_pretrained(folder)
text = "The quick brown fox jumps over the lazy dog."
ids = tok(text)["input_ids"]
chat = tok.apply_chat_template(
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}],
    add_generation_prompt=True, tokenize=False,
)
with torch.no_grad():
    logits = model(torch.tensor([ids])).logits
print(json.dumps({
    "n_ids": len(ids), "roundtrip": tok.decode(ids), "chat": chat,
    "logits_shape": list(logits.shape), "finite": bool(torch.isfinite(logits).all()),
    "eos": tok.eos_token, "pad": tok.pad_token, "bos": tok.bos_token,
}))
"""


def _tiny(out: Path, seed: int) -> None:
    result = subprocess.run(
        [str(ENGINE_PY), "-m", "builder", "tiny-model", str(out), "--seed", str(seed)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    built = {"a": root / "a", "b": root / "b", "c": root / "c"}
    _tiny(built["a"], 7)
    _tiny(built["b"], 7)
    _tiny(built["c"], 8)
    return built


def test_same_seed_gives_identical_files_and_another_seed_other_weights(models: dict[str, Path]) -> None:
    names = sorted(p.name for p in models["a"].iterdir())
    assert names == sorted(p.name for p in models["b"].iterdir())
    for name in names:
        assert (models["a"] / name).read_bytes() == (models["b"] / name).read_bytes(), name
    assert (models["a"] / "model.safetensors").read_bytes() != (models["c"] / "model.safetensors").read_bytes()
    assert (models["a"] / "tokenizer.json").read_bytes() == (models["c"] / "tokenizer.json").read_bytes()


def test_config_fits_vllm_cpu_and_old_transformers(models: dict[str, Path]) -> None:
    config = json.loads((models["a"] / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert config["head_dim"] >= 32  # vLLM's CPU attention refuses 16
    assert config["hidden_size"] == config["num_attention_heads"] * config["head_dim"]
    assert config["num_attention_heads"] % config["num_key_value_heads"] == 0
    assert config["rope_theta"] == config["rope_parameters"]["rope_theta"]
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert 500 <= config["vocab_size"] <= 1100
    assert (models["a"] / "chat_template.jinja").is_file()
    generation = json.loads((models["a"] / "generation_config.json").read_text())
    assert config["eos_token_id"] in generation["eos_token_id"]


def test_manifest_lists_every_file_with_its_hash(models: dict[str, Path]) -> None:
    manifest = read_manifest(models["a"])
    assert manifest.source.kind == "tiny"
    assert manifest.source.revision == "seed=7"
    assert manifest.dtype == "float32"
    assert {e.path for e in manifest.files} >= {"config.json", "model.safetensors", "tokenizer.json"}
    assert check_files(models["a"], manifest, deep=True) == []


def test_tokenizer_chat_template_and_forward_pass_work(models: dict[str, Path]) -> None:
    result = subprocess.run(
        [str(ENGINE_PY), "-c", CHECK_SCRIPT, str(models["a"])],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert info["roundtrip"] == "The quick brown fox jumps over the lazy dog."
    assert info["n_ids"] < 20  # the BPE learned real merges, not bytes
    assert info["chat"] == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n"
    )
    assert info["logits_shape"][:2] == [1, info["n_ids"]]
    assert info["finite"]
    assert len({info["eos"], info["pad"], info["bos"]}) == 3
