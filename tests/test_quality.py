"""The quality gate's decisions (pure)."""

from __future__ import annotations

from typing import Any

from builder.quality import gate_failures, ratios, summary

CONFIG = {"quantization_config": {"quant_method": "awq", "version": "gemm"}}


def report(**changes: Any) -> dict[str, Any]:
    # The DESIGN.md CPU figures for SmolLM2 (fixed AutoAWQ, 1,953 tokens).
    base = {
        "ppl_original": 16.66,
        "ppl_rtn": 20.71,
        "ppl_awq": 19.46,
        "heldout_tokens": 1953,
        "weight_error_max": 0.12,
        "weight_error_layer": "model.layers.0.mlp.down_proj",
        "rtn_weight_error_max": 0.11,
    }
    return {**base, **changes}


def test_design_figures_pass() -> None:
    assert gate_failures(report(), CONFIG) == []
    assert round(ratios(report())["awq_ratio"], 2) == 1.17
    assert "AWQ 19.460 (x1.168)" in summary(report())


def test_broken_cpu_run_fails_every_way() -> None:
    # What the unfixed AutoAWQ gave on CPU: perplexity 233,010 and weights scaled twice.
    failures = gate_failures(report(ppl_awq=233_010.0, weight_error_max=1.7), CONFIG)
    assert any("does not beat round-to-nearest" in f for f in failures)
    assert any("x the original" in f and "--max-ratio 1.25" in f for f in failures)
    assert any("relative error 1.7000 > bound 0.25" in f for f in failures)


def test_ratio_limit_is_configurable() -> None:
    assert gate_failures(report(), CONFIG, max_ratio=1.1)
    assert not gate_failures(report(), CONFIG, max_ratio=1.2)


def test_config_must_say_awq() -> None:
    assert gate_failures(report(), {}) == ["config.json: quantization_config.quant_method is None, expected 'awq'"]
    assert gate_failures(report(), {"quantization_config": {"quant_method": "gptq"}})


def test_non_finite_perplexity() -> None:
    failures = gate_failures(report(ppl_awq=float("nan")), CONFIG)
    assert failures and "not finite" in failures[0]
