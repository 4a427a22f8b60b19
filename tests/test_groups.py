"""Group-size and architecture pre-flight checks (pure)."""

from __future__ import annotations

import pytest

from builder.errors import UnsupportedModel
from builder.groups import GroupSizeError, check_architecture, check_group_size, decoder_linears, fitting_group_sizes

SMOLLM2 = {
    "model_type": "llama",
    "hidden_size": 576,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "intermediate_size": 1536,
}


def test_smollm2_takes_64_not_128() -> None:
    with pytest.raises(GroupSizeError) as info:
        check_group_size(SMOLLM2, 128)
    message = str(info.value)
    assert "self_attn.q_proj input width 576 (hidden_size)" in message
    assert "mlp.down_proj" not in message  # 1536 = 12 * 128 fits
    assert "group sizes that fit every layer: 32, 64" in message
    assert len(check_group_size(SMOLLM2, 64)) == 7


def test_widths_per_layer() -> None:
    widths = {layer.name: (layer.in_features, layer.out_features) for layer in decoder_linears(SMOLLM2)}
    assert widths["self_attn.k_proj"] == (576, 192)
    assert widths["self_attn.o_proj"] == (576, 576)
    assert widths["mlp.down_proj"] == (1536, 576)
    assert fitting_group_sizes(decoder_linears(SMOLLM2)) == [32, 64]


def test_unsupported_architecture_named() -> None:
    with pytest.raises(UnsupportedModel, match="model_type='gpt2'"):
        check_architecture({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]})


def test_output_width_clip_constraint() -> None:
    config = {
        **SMOLLM2,
        "hidden_size": 512,
        "num_attention_heads": 8,
        "head_dim": 64,
        "num_key_value_heads": 1,
        "intermediate_size": 1000,
    }
    with pytest.raises(GroupSizeError, match=r"mlp.down_proj input width 1000"):
        check_group_size(config, 64)
    config["intermediate_size"] = 1024
    config["num_key_value_heads"] = 1
    config["head_dim"] = 32
    config["num_attention_heads"] = 16
    with pytest.raises(UnsupportedModel, match=r"self_attn.v_proj: output width 32"):
        check_group_size(config, 32)


def test_bad_config_values() -> None:
    with pytest.raises(UnsupportedModel, match="'hidden_size' must be a positive integer"):
        check_group_size({**SMOLLM2, "hidden_size": "576"}, 64)
    with pytest.raises(GroupSizeError, match="positive"):
        check_group_size(SMOLLM2, 0)
