"""Pre-flight checks for AWQ on a model's config.json (pure functions, no torch).

AWQ quantizes every linear layer of the decoder blocks in groups of `group_size` input
channels, so the group size must divide each layer's input width. AutoAWQ's clipping
search also walks output channels in batches of 64, and its GEMM packing stores eight
4-bit values per int32. Checking all of this on the config catches a bad choice before
minutes of calibration, with a message that names the layer and the sizes that would fit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from builder.errors import UnsupportedModel

# Decoder-block layouts the AWQ runtime knows (same linear names, RMSNorm before attention
# and MLP): its scale bookkeeping and reconstruction check rely on this layout.
SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")
CANDIDATE_GROUP_SIZES = (32, 64, 128, 256)
CLIP_OUTPUT_MULTIPLE = 64  # AutoAWQ _compute_best_clip asserts out_features % 64 == 0
NO_CLIP_LAYERS = ("self_attn.q_proj", "self_attn.k_proj")  # AutoAWQ skips clipping these


@dataclass(frozen=True)
class Linear:
    """One linear layer of a decoder block: name, input and output width, and where the width comes from."""

    name: str
    in_features: int
    out_features: int
    source: str


class GroupSizeError(UnsupportedModel):
    """The group size does not divide some layer's input width."""


def _int(config: Mapping[str, Any], key: str) -> int:
    value = config.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise UnsupportedModel(f"config.json: {key!r} must be a positive integer, found {value!r}")
    return value


def check_architecture(config: Mapping[str, Any]) -> str:
    """The model type, or UnsupportedModel naming it and what is supported."""
    model_type = config.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        archs = config.get("architectures")
        raise UnsupportedModel(
            f"AWQ quantization supports model_type {', '.join(SUPPORTED_MODEL_TYPES)}; "
            f"this config has model_type={model_type!r} (architectures={archs!r})"
        )
    return str(model_type)


def decoder_linears(config: Mapping[str, Any]) -> list[Linear]:
    """The linear layers of one decoder block (all blocks are alike) with their widths."""
    check_architecture(config)
    hidden = _int(config, "hidden_size")
    heads = _int(config, "num_attention_heads")
    kv_heads = _int(config, "num_key_value_heads") if "num_key_value_heads" in config else heads
    head_dim = config.get("head_dim") or hidden // heads
    if not isinstance(head_dim, int) or head_dim <= 0:
        raise UnsupportedModel(f"config.json: head_dim must be a positive integer, found {head_dim!r}")
    inter = _int(config, "intermediate_size")
    attn = heads * head_dim
    kv = kv_heads * head_dim
    return [
        Linear("self_attn.q_proj", hidden, attn, "hidden_size"),
        Linear("self_attn.k_proj", hidden, kv, "hidden_size"),
        Linear("self_attn.v_proj", hidden, kv, "hidden_size"),
        Linear("self_attn.o_proj", attn, hidden, "num_attention_heads*head_dim"),
        Linear("mlp.gate_proj", hidden, inter, "hidden_size"),
        Linear("mlp.up_proj", hidden, inter, "hidden_size"),
        Linear("mlp.down_proj", inter, hidden, "intermediate_size"),
    ]


def fitting_group_sizes(linears: list[Linear]) -> list[int]:
    """Candidate group sizes that divide every layer's input width."""
    return [g for g in CANDIDATE_GROUP_SIZES if all(layer.in_features % g == 0 for layer in linears)]


def check_group_size(config: Mapping[str, Any], group_size: int, bits: int = 4) -> list[Linear]:
    """Raise a clear error when AWQ with this group size cannot quantize every layer; else the layers."""
    if group_size <= 0:
        raise GroupSizeError(f"group size must be a positive integer, got {group_size}")
    linears = decoder_linears(config)
    bad = [layer for layer in linears if layer.in_features % group_size]
    if bad:
        fits = fitting_group_sizes(linears)
        names = "; ".join(f"{layer.name} input width {layer.in_features} ({layer.source})" for layer in bad)
        hint = f"group sizes that fit every layer: {', '.join(map(str, fits))}" if fits else "no common group size fits"
        raise GroupSizeError(f"group size {group_size} does not divide the input width of {names}; {hint}")
    pack = 32 // bits
    for layer in linears:
        if layer.out_features % pack:
            raise UnsupportedModel(
                f"{layer.name}: output width {layer.out_features} is not a multiple of {pack} "
                f"({bits}-bit values packed per int32)"
            )
        if layer.name not in NO_CLIP_LAYERS and layer.out_features % CLIP_OUTPUT_MULTIPLE:
            raise UnsupportedModel(
                f"{layer.name}: output width {layer.out_features} is not a multiple of {CLIP_OUTPUT_MULTIPLE}, "
                "which AutoAWQ's weight-clipping search requires"
            )
    return linears
