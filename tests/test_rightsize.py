"""Right-sizing against hand-worked examples (Llama-2-7B, Llama-2-70B, SmolLM2-135M)."""

from __future__ import annotations

import pytest

from builder.rightsize import count_params, estimate, kv_cache_bytes, weight_bytes
from core.prices import load_prices

LLAMA2_7B = {
    "model_type": "llama",
    "hidden_size": 4096,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "intermediate_size": 11008,
    "vocab_size": 32000,
    "tie_word_embeddings": False,
}
LLAMA2_70B = {
    "model_type": "llama",
    "hidden_size": 8192,
    "num_hidden_layers": 80,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "intermediate_size": 28672,
    "vocab_size": 32000,
    "tie_word_embeddings": False,
}
SMOLLM2 = {
    "model_type": "llama",
    "hidden_size": 576,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "intermediate_size": 1536,
    "vocab_size": 49152,
    "tie_word_embeddings": True,
}


def test_param_counts_by_hand() -> None:
    # 7B: embed+head 2*32000*4096 = 262,144,000; per layer 4*4096^2 + 3*4096*11008 + 2*4096 = 202,383,360
    assert count_params(LLAMA2_7B).total == 262_144_000 + 32 * 202_383_360 + 4096 == 6_738_415_616
    # 70B: q,o 2*8192^2, k,v 2*8192*1024, mlp 3*8192*28672, norms 2*8192 -> 855,654,400 per layer
    assert count_params(LLAMA2_70B).total == 524_288_000 + 80 * 855_654_400 + 8192 == 68_976_648_192
    # SmolLM2: tied; per layer 884,736 + 2,654,208 + 1,152 = 3,540,096
    assert count_params(SMOLLM2).total == 28_311_552 + 30 * 3_540_096 + 576 == 134_515_008


def test_kv_cache_by_hand() -> None:
    # 2 * layers * kv_heads * head_dim * 2 bytes * tokens * seqs
    assert kv_cache_bytes(LLAMA2_7B, 4096, 1) == 2 * 32 * 32 * 128 * 2 * 4096 == 2 * 1024**3
    assert kv_cache_bytes(LLAMA2_70B, 4096, 8) == 2 * 80 * 8 * 128 * 2 * 4096 * 8
    assert kv_cache_bytes(SMOLLM2, 2048, 1) == 2 * 30 * 3 * 64 * 2 * 2048 == 47_185_920


def test_awq_bytes_per_param() -> None:
    p = count_params(LLAMA2_7B)
    # linears at 0.5 + 2.5/128 bytes, embeddings/head/norms at 2 bytes
    assert weight_bytes(p, "awq", group_size=128) == pytest.approx(
        p.linear * (0.5 + 2.5 / 128) + (p.total - p.linear) * 2
    )
    assert weight_bytes(p, "", "float16") == 2 * p.total


def test_7b_fp16_on_a_24gb_gpu() -> None:
    gpus = list(load_prices().gpus)
    e = estimate(LLAMA2_7B, gpus, max_model_len=4096, seqs=1)
    # (13.477 + 2.147 + 1.0 + 1.348) / 0.9 = 19.97 GB
    assert e.need_gb == pytest.approx((13.476831232 + 2.147483648 + 1.0 + 1.3476831232) / 0.9, rel=1e-6)
    assert e.rule_of_thumb_gb == pytest.approx(6.738415616 * 2.2)
    # the cheapest 24 GB pool at the worker's (flex) rate: AMPERE_24 (L4, A5000, 3090), $0.00019/s = $0.684/h
    assert e.gpu == "AMPERE_24" and e.gpu_count == 1
    assert (e.hourly, e.rates) == (0.684, {"flex": 0.684, "active": 0.684})
    # seed 004's table: the RTX 4090 at the seed's on-demand $0.44 (its A5000 is $0.47), spot 0.18
    seed = estimate(LLAMA2_7B, list(load_prices("seed004").gpus), max_model_len=4096, seqs=1)
    assert (seed.gpu, seed.hourly, seed.rates) == ("RTX_4090", 0.44, {"on_demand": 0.44, "spot": 0.18})


def test_70b_fp16_needs_several_gpus_and_awq_fits_one() -> None:
    gpus = list(load_prices().gpus)
    fp16 = estimate(LLAMA2_70B, gpus, max_model_len=4096)
    # 171.2 GB: one B200 (180 GB) holds it; without that pool it takes two GPUs (2 x 96 GB, the fewest that fit)
    assert fp16.need_gb > 141 and (fp16.gpu, fp16.gpu_count) == ("BLACKWELL_180", 1)
    smaller = estimate(LLAMA2_70B, [g for g in gpus if g.vram_gb < 180], max_model_len=4096)
    assert (smaller.gpu, smaller.gpu_count, smaller.hourly) == ("BLACKWELL_96", 2, 7.992)  # 2 x 0.00111 x 3600
    awq = estimate(
        {**LLAMA2_70B, "quantization_config": {"quant_method": "awq", "group_size": 128}}, gpus, max_model_len=4096
    )
    assert awq.quantization == "awq" and awq.gpu_count == 1
    # linears 68,451,041,280 * (0.5 + 2.5/128) + 525,606,912 * 2 = 36.614 GB; KV 1.342 GB;
    # overhead 1 + 3.661 GB -> 42.617 / 0.9 = 47.35 GB: one 48 GB card
    assert awq.need_gb == pytest.approx((36.613668864 + 1.34217728 + 1.0 + 3.6613668864) / 0.9, rel=1e-6)
    assert awq.vram_gb == 48
    assert awq.rule_of_thumb_gb == pytest.approx(68.976648192 * 1.2)


def test_smollm2_fits_the_smallest_gpu() -> None:
    gpus = list(load_prices().gpus)
    e = estimate(SMOLLM2, gpus, max_model_len=2048)
    assert e.params == 134_515_008
    assert e.gpu == min(gpus, key=lambda g: g.hourly()).id == "AMPERE_16"
    assert e.hourly == 0.576  # 0.00016 x 3600
