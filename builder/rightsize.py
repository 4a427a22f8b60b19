"""`python -m builder right-size MODEL_DIR`: the VRAM a model needs and the cheapest GPU that holds it.

Estimate (bytes), all from config.json:
    weights   = params * bytes/param   (fp16/bf16: 2; fp32: 4; AWQ 4-bit: decoder linears at
                0.5 byte + 2.5 bytes per group (fp16 scale + 4-bit zero), the rest in fp16)
    kv_cache  = 2 (K and V) * layers * kv_heads * head_dim * kv_bytes * max_model_len * seqs
    overhead  = 1 GB (CUDA context, vLLM runtime) + 10% of the weights (activations, buffers)
    need      = (weights + kv_cache + overhead) / gpu_memory_utilization
Parameters per architecture (Llama-style decoder): embeddings (vocab * hidden), per layer
attention (q, k, v, o with grouped KV heads, biases when configured), gated MLP (3 * hidden *
intermediate), two RMSNorms; a final norm; an LM head unless tied to the embeddings.
Beside it, the rule of thumb: 2.2 GB per billion parameters in FP16, 1.2 in 4-bit.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from builder.errors import SourceError

GB = 1e9
OVERHEAD_FIXED = 1.0 * GB
OVERHEAD_FRACTION = 0.10
RULE_OF_THUMB_GB = {"fp16": 2.2, "4bit": 1.2}
DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4}
GPU_COUNTS = (1, 2, 4, 8)


@dataclass(frozen=True)
class ParamCount:
    embeddings: int
    attention: int
    mlp: int
    norms: int
    lm_head: int

    @property
    def total(self) -> int:
        return self.embeddings + self.attention + self.mlp + self.norms + self.lm_head

    @property
    def linear(self) -> int:
        """Parameters in the decoder linears (what AWQ quantizes)."""
        return self.attention + self.mlp


def _get(config: Mapping[str, Any], key: str) -> int:
    value = config.get(key)
    if not isinstance(value, int) or value <= 0:
        raise SourceError(f"config.json: {key!r} must be a positive integer, found {value!r}")
    return value


def count_params(config: Mapping[str, Any]) -> ParamCount:
    """Parameter count of a Llama-style decoder (llama, mistral, qwen2/3) from its config."""
    hidden, layers, vocab = _get(config, "hidden_size"), _get(config, "num_hidden_layers"), _get(config, "vocab_size")
    heads = _get(config, "num_attention_heads")
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or hidden // heads
    inter = _get(config, "intermediate_size")
    q, kv = heads * head_dim, kv_heads * head_dim
    attn = hidden * q + 2 * hidden * kv + q * hidden
    if config.get("attention_bias"):  # llama: bias on q, k, v and o
        attn += q + 2 * kv + hidden
    elif config.get("model_type") == "qwen2":  # qwen2: bias on q, k, v
        attn += q + 2 * kv
    mlp = 3 * hidden * inter + (2 * inter + hidden if config.get("mlp_bias") else 0)
    norms = layers * 2 * hidden + hidden
    embeddings = vocab * hidden
    lm_head = 0 if config.get("tie_word_embeddings", False) else vocab * hidden
    return ParamCount(embeddings, layers * attn, layers * mlp, norms, lm_head)


def quantization_of(config: Mapping[str, Any]) -> str:
    qc = config.get("quantization_config")
    return str(qc.get("quant_method", "")) if isinstance(qc, Mapping) else ""


def weight_bytes(params: ParamCount, quantization: str, dtype: str = "float16", group_size: int = 128) -> float:
    if quantization == "awq":
        return params.linear * (0.5 + 2.5 / group_size) + (params.total - params.linear) * 2
    return float(params.total * DTYPE_BYTES.get(dtype, 2))


def kv_cache_bytes(config: Mapping[str, Any], max_model_len: int, seqs: int, kv_bytes: int = 2) -> int:
    heads = _get(config, "num_attention_heads")
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or _get(config, "hidden_size") // heads
    return 2 * _get(config, "num_hidden_layers") * kv_heads * head_dim * kv_bytes * max_model_len * seqs


@dataclass(frozen=True)
class Estimate:
    params: int
    quantization: str
    weights_gb: float
    kv_cache_gb: float
    overhead_gb: float
    need_gb: float
    rule_of_thumb_gb: float
    gpu: str | None
    gpu_count: int
    vram_gb: float | None
    hourly: float | None  # the worker's rate (RunPod: flex) x GPUs
    rates: dict[str, float]  # every rate the pool has, USD per hour x GPUs (RunPod: flex, active)


def estimate(
    config: Mapping[str, Any],
    gpus: list[Any],
    *,
    max_model_len: int,
    seqs: int = 1,
    gpu_memory_utilization: float = 0.9,
    dtype: str = "float16",
    group_size: int | None = None,
) -> Estimate:
    """VRAM estimate and the cheapest fitting GPU pool (fewest GPUs first, at the worker's rate) from price-table
    entries (`core.prices.GpuPrice`)."""
    params = count_params(config)
    quant = quantization_of(config)
    qc = config.get("quantization_config")
    group = group_size or (int(qc.get("group_size", 128)) if isinstance(qc, Mapping) else 128)
    weights = weight_bytes(params, quant, dtype, group)
    kv = kv_cache_bytes(config, max_model_len, seqs)
    overhead = OVERHEAD_FIXED + OVERHEAD_FRACTION * weights
    need = (weights + kv + overhead) / gpu_memory_utilization
    rule = params.total / 1e9 * RULE_OF_THUMB_GB["4bit" if quant else "fp16"]
    choice = None
    for count in GPU_COUNTS:
        fitting = [g for g in gpus if g.vram_gb * GB * count >= need]
        if fitting:
            choice = (min(fitting, key=lambda g: (g.hourly() * count, g.vram_gb)), count)
            break
    gpu, count = choice if choice else (None, 0)
    return Estimate(
        params=params.total,
        quantization=quant or dtype,
        weights_gb=weights / GB,
        kv_cache_gb=kv / GB,
        overhead_gb=overhead / GB,
        need_gb=need / GB,
        rule_of_thumb_gb=rule,
        gpu=gpu.id if gpu else None,
        gpu_count=count,
        vram_gb=gpu.vram_gb if gpu else None,
        hourly=gpu.hourly() * count if gpu else None,
        rates={name: rate.hourly * count for name, rate in gpu.rates.items()} if gpu else {},
    )


def format_estimate(e: Estimate, max_model_len: int, seqs: int) -> str:
    lines = [
        f"parameters: {e.params / 1e6:,.1f} M ({e.quantization})",
        f"weights {e.weights_gb:.2f} GB + KV cache {e.kv_cache_gb:.2f} GB ({max_model_len} tokens x {seqs} seqs)"
        f" + overhead {e.overhead_gb:.2f} GB -> needs {e.need_gb:.2f} GB of VRAM",
        f"rule of thumb ({'1.2' if e.quantization == 'awq' else '2.2'} GB per billion params): "
        f"{e.rule_of_thumb_gb:.2f} GB",
    ]
    if e.gpu is None:
        lines.append(f"no GPU in the price table fits even {GPU_COUNTS[-1]} at a time")
    else:
        rates = ", ".join(f"{name} ${hourly:.3f}/h" for name, hourly in e.rates.items())
        lines.append(f"cheapest fitting GPU pool: {e.gpu_count} x {e.gpu} ({e.vram_gb:g} GB): {rates}")
    return "\n".join(lines)


def _command(args: argparse.Namespace) -> int:
    from core.prices import load_prices

    path = Path(args.model)
    config_path = path / "config.json" if path.is_dir() else path
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SourceError(f"cannot read {config_path}: {exc}") from exc
    table = load_prices(Path(args.prices) if args.prices else None)
    result = estimate(
        config,
        list(table.gpus),
        max_model_len=args.max_model_len,
        seqs=args.seqs,
        gpu_memory_utilization=args.gpu_memory_utilization,
        dtype=args.dtype,
        group_size=args.group_size,
    )
    print(json.dumps(asdict(result), indent=2) if args.json else format_estimate(result, args.max_model_len, args.seqs))
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("right-size", help="VRAM estimate and the cheapest fitting GPU pool with its rates")
    p.add_argument("model", help="model folder or its config.json")
    p.add_argument("--max-model-len", type=int, default=4096)
    p.add_argument("--seqs", type=int, default=1, help="sequences held in the KV cache at once")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    p.add_argument("--dtype", choices=tuple(DTYPE_BYTES), default="float16", help="weights dtype when not quantized")
    p.add_argument("--group-size", type=int, default=None, help="AWQ group size (default: the config's, else 128)")
    p.add_argument("--prices", default=None, help="price table JSON, or a packaged one by name (seed004)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_command)
