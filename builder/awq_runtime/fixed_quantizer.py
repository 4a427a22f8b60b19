"""AutoAWQ's quantizer with the CPU alias bug fixed, recording the scales it applies.

The bug (AutoAWQ 0.2.9, ``AwqQuantizer._compute_best_scale``): before trying 20 candidate
scales on a block, it backs up the block's weights with
``org_sd = {k: v.cpu() for k, v in module2inspect.state_dict().items()}``. ``Tensor.cpu()``
copies a CUDA tensor, but returns the SAME tensor when it already lives on the CPU, so the
"backup" aliases the live weights. The first candidate's in-place ``fc.weight.mul_(scales)``
then overwrites the backup, every later candidate starts from already-scaled weights, and
``load_state_dict(org_sd)`` restores scaled weights. The checkpoint looks fine but the model
is broken (SmolLM2: perplexity 16.7 -> 233,010). On CUDA the bug does not bite.

The fix: while the parent method runs, the block's ``state_dict`` returns detached CLONES of
the tensors that live on the CPU (CUDA tensors are left to the parent's own ``.cpu()`` copy,
so GPU memory is not doubled). Everything else is AutoAWQ's own algorithm, untouched.

The subclass also records, per layer, the per-input-channel scales AutoAWQ folds into the
weights (columns multiplied; a preceding linear's rows divided), so the reconstruction check
can undo them and compare the dequantized weights with the originals.
"""

from __future__ import annotations

import torch
from awq.quantize.quantizer import AwqQuantizer
from awq.utils.module import get_op_name
from torch import nn


def _cloning_state_dict(module: nn.Module):
    original = module.state_dict

    def state_dict(*args, **kwargs):
        return {
            key: value.detach().clone() if value.device.type == "cpu" else value
            for key, value in original(*args, **kwargs).items()
        }

    return state_dict


class RecordingAwqQuantizer(AwqQuantizer):
    """Upstream AwqQuantizer (bug included) that records the scales it folds into the weights."""

    # Filled during quantize(): full layer name -> scales multiplied into its input columns /
    # divided out of its last rows (when it is the `prev_op` of a scaled linear).
    column_scales: dict
    row_scales: dict

    def _search_best_scale(self, module, prev_op, layers, inp, module2inspect=None, kwargs=None):  # noqa: PLR0917 (upstream's signature)
        result = super()._search_best_scale(
            module, prev_op, layers, inp, module2inspect=module2inspect, kwargs=kwargs if kwargs is not None else {}
        )
        prev_name, layer_names, scales = result
        prefix = get_op_name(self.model, module) + "."
        if not hasattr(self, "column_scales"):
            self.column_scales, self.row_scales = {}, {}
        scales_f = scales.detach().float().cpu()
        for name in layer_names:
            full = prefix + name
            self.column_scales[full] = self.column_scales.get(full, torch.ones_like(scales_f)) * scales_f
        if isinstance(prev_op, nn.Linear):
            full = prefix + prev_name
            self.row_scales[full] = self.row_scales.get(full, torch.ones_like(scales_f)) * scales_f
        return result


class FixedAwqQuantizer(RecordingAwqQuantizer):
    """AwqQuantizer with a real backup in `_compute_best_scale` and a record of applied scales."""

    def _compute_best_scale(self, x, w_mean, x_mean, module2inspect, linears2scale, fp16_output, kwargs=None):  # noqa: PLR0917 (upstream's signature)
        # An instance attribute shadows nn.Module.state_dict for the parent's single call.
        module2inspect.state_dict = _cloning_state_dict(module2inspect)
        try:
            return super()._compute_best_scale(
                x, w_mean, x_mean, module2inspect, linears2scale, fp16_output, kwargs if kwargs is not None else {}
            )
        finally:
            del module2inspect.state_dict
