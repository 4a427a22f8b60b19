"""GGUF file -> a model folder vLLM loads (safetensors, config, tokenizer, chat template).

`inspect_gguf` reads only the header (the `gguf` package's GGUFReader) and
`check_supported` turns it into a clear `UnsupportedModel` before anything is written.
`convert_gguf` dequantizes through transformers 5 (`GgufConfig(dequantize=True)`, which
`save_pretrained` needs) and writes the folder. Needs torch, transformers, gguf and
accelerate: engine venv only; those imports stay inside the functions.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.errors import SourceError, UnsupportedModel
from builder.model_files import add_compat_config

# Architectures whose GGUF transformers maps to a causal-LM config vLLM serves.
# "llama" is the verified one (SmolLM2); mistral and qwen2/3 use the same conversion path.
SUPPORTED_ARCHITECTURES: frozenset[str] = frozenset({"llama", "mistral", "qwen2", "qwen3"})
# Tensor types the gguf package's dequantizer (used by transformers) handles and we accept.
SUPPORTED_TENSOR_TYPES: frozenset[str] = frozenset(
    {"F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"}
)
DTYPES: tuple[str, ...] = ("float16", "float32", "bfloat16")


@dataclass(frozen=True)
class GgufHeader:
    architecture: str
    name: str
    tokenizer_model: str  # "gpt2", "llama", ... or "" when the file carries no tokenizer
    tensor_types: dict[str, int]  # type name -> number of tensors
    tensor_count: int


def check_supported(header: GgufHeader, path: Path) -> None:
    """Raise UnsupportedModel naming what in `header` cannot be converted."""
    problems: list[str] = []
    if header.architecture not in SUPPORTED_ARCHITECTURES:
        supported = ", ".join(sorted(SUPPORTED_ARCHITECTURES))
        problems.append(f"architecture {header.architecture!r} is not supported (supported: {supported})")
    bad = {name: count for name, count in header.tensor_types.items() if name not in SUPPORTED_TENSOR_TYPES}
    if bad:
        listed = ", ".join(f"{name} ({count} tensors)" for name, count in sorted(bad.items()))
        problems.append(
            f"tensor type(s) {listed} cannot be dequantized (supported: {', '.join(sorted(SUPPORTED_TENSOR_TYPES))})"
        )
    if not header.tokenizer_model:
        problems.append("the file carries no tokenizer (tokenizer.ggml.model missing)")
    if header.tensor_count == 0:
        problems.append("the file holds no tensors")
    if problems:
        raise UnsupportedModel(f"cannot convert {path}: " + "; ".join(problems))


def inspect_gguf(path: Path) -> GgufHeader:
    """Read the GGUF header and tensor table (no tensor data is dequantized)."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path), "r")
    except (ValueError, OSError) as exc:
        raise SourceError(f"{path}: not a readable GGUF file ({exc})") from exc

    def text(key: str) -> str:
        field = reader.get_field(key)
        if field is None:
            return ""
        value = field.contents()
        return value if isinstance(value, str) else str(value)

    types = Counter(tensor.tensor_type.name for tensor in reader.tensors)
    return GgufHeader(
        architecture=text("general.architecture"),
        name=text("general.name"),
        tokenizer_model=text("tokenizer.ggml.model"),
        tensor_types=dict(types),
        tensor_count=len(reader.tensors),
    )


def convert_gguf(gguf_path: Path, stage: Path, *, dtype: str = "float16") -> dict[str, Any]:
    """Convert `gguf_path` into the empty folder `stage`; return details for the manifest's extra.

    The caller checks the header first (`inspect_gguf` + `check_supported`).
    """
    if dtype not in DTYPES:
        raise SourceError(f"--dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, GgufConfig

    folder, name = str(gguf_path.parent), gguf_path.name
    torch_dtype = getattr(torch, dtype)
    steps = ["load tokenizer", "dequantize weights", "save weights", "save tokenizer and configs"]
    with tqdm(total=len(steps), desc=f"converting {name}", unit="step") as bar:
        bar.set_postfix_str(steps[0])
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        bar.update()
        bar.set_postfix_str(steps[1])
        model = AutoModelForCausalLM.from_pretrained(
            folder,
            gguf_file=name,
            dtype=torch_dtype,
            quantization_config=GgufConfig(dequantize=True),
        )
        bar.update()
        bar.set_postfix_str(steps[2])
        model.save_pretrained(stage)
        bar.update()
        bar.set_postfix_str(steps[3])
        tokenizer.save_pretrained(stage)
        generation = model.generation_config if model.generation_config is not None else GenerationConfig()
        if generation.eos_token_id is None and tokenizer.eos_token_id is not None:
            generation.eos_token_id = tokenizer.eos_token_id
        generation.save_pretrained(stage)
        _clean_config(stage, dtype)
        add_compat_config(stage)
        bar.update()
    return {"parameters": sum(p.numel() for p in model.parameters())}


def _clean_config(stage: Path, dtype: str) -> None:
    """Make config.json a plain (not quantized) checkpoint of `dtype`."""
    path = stage / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config.pop("quantization_config", None)
    config.pop("_model_name_or_path", None)  # the GGUF's free-text name, not a path
    config["dtype"] = dtype
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
