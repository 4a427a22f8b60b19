"""The quantization quality gate: pure decisions on a quality report.

Every `quantize` run measures, on a held-out text, the perplexity of the original model,
of plain round-to-nearest (RTN) 4-bit at the same group size, and of the AWQ checkpoint it
wrote (dequantized), plus how well the dequantized weights reconstruct the originals. The
run passes when:

- the written config says ``quantization_config.quant_method == "awq"``;
- every quantized layer's relative reconstruction error ``||W_rec - W||_F / ||W||_F`` is at
  most WEIGHT_ERROR_BOUND (W_rec: dequantized weight with AWQ's per-channel scales undone).
  4-bit RTN on Gaussian-like weights gives about 0.09; the AutoAWQ 0.2.9 CPU alias bug
  (see builder/awq_runtime/fixed_quantizer.py) leaves the weights scaled twice and gives
  errors far above the bound, so this check catches it on any text;
- every perplexity is finite, AWQ's is lower than RTN's (the text-independent check that
  the activation-aware search helped), and AWQ / original is at most `max_ratio`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

WEIGHT_ERROR_BOUND = 0.25
DEFAULT_MAX_RATIO = 1.25


def _number(report: Mapping[str, Any], key: str) -> float:
    value = report.get(key)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"quality report: {key!r} missing or not a number ({value!r})")
    return float(value)


def ratios(report: Mapping[str, Any]) -> dict[str, float]:
    """Perplexity ratios to the original model."""
    original = _number(report, "ppl_original")
    return {
        "rtn_ratio": _number(report, "ppl_rtn") / original,
        "awq_ratio": _number(report, "ppl_awq") / original,
    }


def gate_failures(
    report: Mapping[str, Any],
    config: Mapping[str, Any],
    *,
    max_ratio: float = DEFAULT_MAX_RATIO,
    weight_error_bound: float = WEIGHT_ERROR_BOUND,
) -> list[str]:
    """Why the quantized model fails the gate (empty list: it passes)."""
    failures: list[str] = []
    qconfig = config.get("quantization_config")
    method = qconfig.get("quant_method") if isinstance(qconfig, Mapping) else None
    if method != "awq":
        failures.append(f"config.json: quantization_config.quant_method is {method!r}, expected 'awq'")

    worst = _number(report, "weight_error_max")
    if not math.isfinite(worst) or worst > weight_error_bound:
        failures.append(
            f"weight reconstruction: layer {report.get('weight_error_layer')} has relative error {worst:.4f} "
            f"> bound {weight_error_bound} (plain RTN's worst layer: {_number(report, 'rtn_weight_error_max'):.4f})"
        )

    ppl = {key: _number(report, f"ppl_{key}") for key in ("original", "rtn", "awq")}
    bad = [key for key, value in ppl.items() if not math.isfinite(value) or value <= 0]
    if bad:
        failures.append(f"perplexity not finite/positive for: {', '.join(bad)} ({ppl})")
        return failures
    if ppl["awq"] >= ppl["rtn"]:
        failures.append(
            f"AWQ does not beat round-to-nearest: perplexity AWQ {ppl['awq']:.3f} >= RTN {ppl['rtn']:.3f} "
            f"(original {ppl['original']:.3f})"
        )
    awq_ratio = ppl["awq"] / ppl["original"]
    if awq_ratio > max_ratio:
        failures.append(
            f"AWQ perplexity {ppl['awq']:.3f} is {awq_ratio:.3f}x the original's {ppl['original']:.3f} "
            f"(limit --max-ratio {max_ratio})"
        )
    return failures


def summary(report: Mapping[str, Any]) -> str:
    """One human line with the figures."""
    r = ratios(report)
    return (
        f"perplexity on {report.get('heldout_tokens')} held-out tokens: original {report['ppl_original']:.3f}, "
        f"RTN {report['ppl_rtn']:.3f} (x{r['rtn_ratio']:.3f}), AWQ {report['ppl_awq']:.3f} (x{r['awq_ratio']:.3f}); "
        f"worst weight error AWQ {report['weight_error_max']:.4f} / RTN {report['rtn_weight_error_max']:.4f}"
    )
