"""Show the AutoAWQ 0.2.9 CPU alias bug and that FixedAwqQuantizer fixes it.

Runs `_compute_best_scale` of the upstream and of the fixed quantizer on the same CPU
linear layer. The method must leave the layer's weights as it found them (it tries 20
scalings and restores the backup after each); upstream's backup aliases the weights on the
CPU, so its layer comes back scaled.
"""

from __future__ import annotations

import torch
from awq.quantize.quantizer import AwqQuantizer
from torch import nn

from builder.awq_runtime.fixed_quantizer import FixedAwqQuantizer


def _bare(cls):
    # The real __init__ runs calibration on a whole model; this check needs only the settings
    # that _compute_best_scale reads.
    quantizer = cls.__new__(cls)
    quantizer.w_bit, quantizer.group_size, quantizer.zero_point = 4, 32, True
    quantizer.duo_scaling, quantizer.n_parallel_calib_samples = True, None
    quantizer.max_chunk_memory = 1 << 30
    return quantizer


def _max_change(cls, seed: int = 0) -> float:
    torch.manual_seed(seed)
    layer = nn.Linear(64, 64, bias=False)
    before = layer.weight.detach().clone()
    x = torch.randn(4, 16, 64)
    with torch.no_grad():
        out = layer(x)
        x_mean = x.abs().view(-1, 64).mean(0)
        w = layer.weight.view(-1, 32).abs()
        w_mean = (w / w.amax(dim=1, keepdim=True)).view(64, 64).mean(0)
        _bare(cls)._compute_best_scale(x, w_mean, x_mean, layer, [layer], out, {})
    return (layer.weight.detach() - before).abs().max().item()


def check() -> dict:
    return {"upstream_max_change": _max_change(AwqQuantizer), "fixed_max_change": _max_change(FixedAwqQuantizer)}
