"""Weights: unpack AWQ GEMM tensors, plain round-to-nearest, reconstruction error.

GEMM layout written by AutoAWQ (WQLinear_GEMM.from_linear), 4-bit:
    qweight  int32 [in, out/8]    eight 4-bit values per int32; shift 4*i holds column ORDER[i]
    qzeros   int32 [in/g, out/8]  same packing
    scales   fp16  [in/g, out]
    W[out, in] = (q - zero) * scale, per group of g input channels.
"""

from __future__ import annotations

import torch

PACK_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)  # packed slot i -> column offset within 8
LINEAR_SUFFIXES = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """[rows, cols/8] int32 -> [rows, cols] int32 values 0..15 in AWQ's column order."""
    rows, packs = packed.shape
    out = torch.empty((rows, packs, 8), dtype=torch.int32, device=packed.device)
    for slot, column in enumerate(PACK_ORDER):
        out[:, :, column] = (packed >> (4 * slot)) & 0xF
    return out.reshape(rows, packs * 8)


def dequantize_gemm(qweight: torch.Tensor, qzeros: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Dequantized weight [out, in] in float32 from one GEMM layer's tensors."""
    q = unpack_int4(qweight).float()
    zeros = unpack_int4(qzeros).float()
    group = q.shape[0] // scales.shape[0]
    if group * scales.shape[0] != q.shape[0]:
        raise ValueError(f"qweight rows {q.shape[0]} are not a multiple of scales rows {scales.shape[0]}")
    w = (q - zeros.repeat_interleave(group, dim=0)) * scales.float().repeat_interleave(group, dim=0)
    return w.t().contiguous()


def round_to_nearest(weight: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    """Plain asymmetric RTN with a zero point per group of `group_size` input channels (float32)."""
    out_features, in_features = weight.shape
    if in_features % group_size:
        raise ValueError(f"group size {group_size} does not divide input width {in_features}")
    w = weight.float().reshape(-1, group_size)
    max_int = 2**bits - 1
    w_max = w.amax(dim=1, keepdim=True)
    w_min = w.amin(dim=1, keepdim=True)
    scale = (w_max - w_min).clamp(min=1e-5) / max_int
    zero = torch.round(-w_min / scale).clamp(0, max_int)
    q = torch.clamp(torch.round(w / scale) + zero, 0, max_int)
    return ((q - zero) * scale).reshape(out_features, in_features)


def relative_error(approx: torch.Tensor, original: torch.Tensor) -> float:
    """||approx - original||_F / ||original||_F, in float32."""
    original = original.float()
    denom = torch.linalg.norm(original).item()
    return torch.linalg.norm(approx.float() - original).item() / max(denom, 1e-12)


def undo_awq_scales(
    dequantized: torch.Tensor, column_scale: torch.Tensor | None, row_scale: torch.Tensor | None
) -> torch.Tensor:
    """The weight in the original model's units: AWQ multiplied input columns by `column_scale`
    and divided the last len(row_scale) rows by `row_scale` (folding the next layer's scales)."""
    w = dequantized.float().clone()
    if column_scale is not None:
        w = w / column_scale.to(w.device).view(1, -1)
    if row_scale is not None:
        n = row_scale.numel()
        w[-n:] = w[-n:] * row_scale.to(w.device).view(-1, 1)
    return w


def decoder_linear_names(state_keys: list[str]) -> list[str]:
    """Names ('model.layers.3.mlp.up_proj') of the decoder linears, from an unquantized state dict."""
    names = []
    for key in state_keys:
        if key.endswith(".weight") and ".layers." in key:
            base = key[: -len(".weight")]
            if base.endswith(LINEAR_SUFFIXES):
                names.append(base)
    return names
