"""GGUF source: header checks refuse what cannot be converted (before writing anything), and the
real SmolLM2 GGUF converts into a folder transformers and vLLM load.

Conversion needs torch: `python -m builder fetch` runs in the engine venv (a subprocess).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from builder.errors import UnsupportedModel
from builder.gguf_convert import GgufHeader, check_supported
from builder.gguf_source import KNOWN
from builder.manifest import check_files
from builder.model_files import staging_dir
from core.manifest import read_manifest
from tests.prerequisites import needs_engine_venv

REPO = Path(__file__).resolve().parents[1]
ENGINE_PY = REPO / ".venv-engine" / "bin" / "python"
SMOLLM2 = KNOWN["smollm2"]
needs_engine = needs_engine_venv

# Writes a small GGUF by hand: argv = path, architecture, numpy dtype of its one tensor.
WRITE_GGUF = """
import sys, numpy as np, gguf
path, arch, dtype = sys.argv[1:4]
w = gguf.GGUFWriter(path, arch)
w.add_block_count(1); w.add_context_length(64); w.add_embedding_length(32); w.add_head_count(1)
w.add_tokenizer_model("gpt2"); w.add_token_list(["a", "b"])
w.add_tensor("token_embd.weight", np.zeros((2, 32), dtype=np.dtype(dtype)))
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
"""

FRANCE = """
import sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1])
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32)
ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                              add_generation_prompt=True, return_tensors="pt", return_dict=True)
out = model.generate(**ids, max_new_tokens=12, do_sample=False)
print(tok.decode(out[0][ids["input_ids"].shape[1]:], skip_special_tokens=True))
"""


def _engine(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ENGINE_PY), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )


def _header(**changes: object) -> GgufHeader:
    fields: dict[str, object] = {
        "architecture": "llama",
        "name": "x",
        "tokenizer_model": "gpt2",
        "tensor_types": {"Q4_1": 210, "Q8_0": 1, "F32": 61},
        "tensor_count": 272,
    }
    fields.update(changes)
    return GgufHeader(**fields)  # type: ignore[arg-type]


def test_check_supported_accepts_the_smollm2_header() -> None:
    check_supported(_header(), Path("m.gguf"))


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"architecture": "mamba"}, "architecture 'mamba' is not supported"),
        ({"tensor_types": {"Q4_1": 3, "IQ2_XXS": 2}}, "IQ2_XXS (2 tensors)"),
        ({"tokenizer_model": ""}, "no tokenizer"),
        ({"tensor_count": 0, "tensor_types": {}}, "no tensors"),
    ],
)
def test_check_supported_names_what_is_unsupported(changes: dict[str, object], named: str) -> None:
    with pytest.raises(UnsupportedModel) as err:
        check_supported(_header(**changes), Path("/x/m.gguf"))
    assert named in str(err.value)
    assert "/x/m.gguf" in str(err.value)


@needs_engine
@pytest.mark.parametrize(
    ("arch", "dtype", "named"),
    [
        ("mamba", "float32", "architecture 'mamba' is not supported"),
        ("llama", "float64", "tensor type(s) F64 (1 tensors) cannot be dequantized"),
    ],
)
def test_unsupported_gguf_fails_clearly_before_writing_anything(
    tmp_path: Path, arch: str, dtype: str, named: str
) -> None:
    gguf = tmp_path / f"{arch}.gguf"
    made = _engine("-c", WRITE_GGUF, str(gguf), arch, dtype)
    assert made.returncode == 0, made.stderr[-2000:]
    out = tmp_path / "out"
    result = _engine("-m", "builder", "fetch", str(gguf), "--out", str(out))
    assert result.returncode == 1
    assert named in result.stderr
    assert not out.exists()
    assert not staging_dir(out).exists()


@needs_engine
def test_a_file_that_is_not_gguf_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a gguf at all" * 10)
    result = _engine("-m", "builder", "fetch", str(bogus), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "not a readable GGUF file" in result.stderr
    assert not (tmp_path / "out").exists()


def _converted_smollm2() -> Path:
    folder = REPO / "models" / "smollm2"
    if not (folder / "manifest.json").is_file():
        raise RuntimeError(f"{folder} is not built: run `make models` (make test does it)")
    return folder


@pytest.mark.realmodel
def test_converted_smollm2_folder_is_complete() -> None:
    folder = _converted_smollm2()
    manifest = read_manifest(folder)
    assert (manifest.source.kind, manifest.source.uri) == ("gguf", "smollm2")
    assert manifest.source.revision == f"sha256:{SMOLLM2.sha256}"
    assert manifest.extra["gguf"] == {
        "name": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "size": SMOLLM2.size,
        "sha256": SMOLLM2.sha256,
    }
    assert manifest.dtype == "float16"
    assert check_files(folder, manifest, deep=True) == []
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["rope_theta"] == 100000.0
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert (config["hidden_size"], config["num_hidden_layers"], config["head_dim"]) == (576, 30, 64)
    assert "<|im_start|>" in (folder / "chat_template.jinja").read_text()


@pytest.mark.realmodel
@needs_engine
def test_second_fetch_of_smollm2_is_a_no_op(tmp_path: Path) -> None:
    copy = tmp_path / "smollm2"
    copy.mkdir()
    for path in _converted_smollm2().iterdir():
        if path.is_file():  # not `builder warm`'s compile cache, where one was kept
            os.link(path, copy / path.name)  # a cheap copy; fetch never writes into existing files
    stamp = (copy / "manifest.json").stat().st_mtime_ns
    result = _engine("-m", "builder", "fetch", "smollm2", "--out", str(copy))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "up to date" in result.stdout
    assert (copy / "manifest.json").stat().st_mtime_ns == stamp


@pytest.mark.realmodel
@needs_engine
def test_gguf_path_converts_to_float32_and_answers_paris(tmp_path: Path) -> None:
    gguf = REPO / ".cache" / "gguf" / SMOLLM2.file_name
    if not gguf.is_file():
        raise RuntimeError(f"{gguf} missing: `make models` extracts it")
    out = tmp_path / "smol32"
    result = _engine("-m", "builder", "fetch", str(gguf), "--out", str(out), "--dtype", "float32")
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = read_manifest(out)
    assert (manifest.source.kind, manifest.dtype) == ("gguf", "float32")
    assert manifest.extra["gguf"]["sha256"] == SMOLLM2.sha256
    assert json.loads((out / "config.json").read_text())["dtype"] == "float32"
    weights = next(e for e in manifest.files if e.path == "model.safetensors")
    assert weights.size > 500_000_000  # 134.5 M parameters x 4 bytes
    answer = _engine("-c", FRANCE, str(out))
    assert answer.returncode == 0, answer.stderr[-2000:]
    assert "Paris" in answer.stdout
