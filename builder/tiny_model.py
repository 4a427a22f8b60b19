"""`python -m builder tiny-model DIR [--seed N]`: a tiny random Llama model vLLM can serve.

Random weights from the seed, a byte-level BPE tokenizer trained on a small built-in
English corpus, a ChatML-style chat template, a generation config and manifest.json.
The same seed gives byte-identical files. head_dim is 32: vLLM's CPU attention refuses 16.
Runs in the engine venv (torch, transformers, tokenizers); takes seconds.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from builder.manifest import hash_files, write_manifest
from builder.model_files import add_compat_config, atomic_output
from core.manifest import Manifest, Source

NAME = "tiny-llama"
VOCAB_SIZE = 1000
BOS, EOS, PAD = "<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = [BOS, EOS, PAD, IM_START, IM_END]

ARCH = {
    "hidden_size": 128,
    "num_attention_heads": 4,
    "head_dim": 32,
    "num_key_value_heads": 2,
    "num_hidden_layers": 2,
    "intermediate_size": 256,
    "max_position_embeddings": 2048,
}

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CORPUS = """\
The quick brown fox jumps over the lazy dog near the river bank.
A small model answers questions about the weather, the time and the news.
Paris is the capital of France, and Berlin is the capital of Germany.
The worker starts the engine when the first job arrives and stops it when idle.
Every request carries a prompt, a few sampling parameters and a token limit.
She reads a book in the garden while the children play with a red ball.
The cache keeps answers to identical questions so that nobody pays twice.
Numbers like one, two, three, ten, twenty and a hundred appear in many texts.
Water boils at one hundred degrees and freezes at zero on the Celsius scale.
The budget for the day is spent when the cost of all jobs reaches the limit.
He asked the assistant to write a short poem about the sea and the moon.
Servers in the cloud are billed by the second while they are running.
Good morning! How are you today? I am fine, thank you, and you?
The system said: you are a helpful assistant. The user said: hello there.
Trains leave the station every hour, and the last one departs at midnight.
Cats sleep most of the day, while dogs like to run and fetch sticks.
"""


def _corpus_lines() -> list[str]:
    lines = [line for line in CORPUS.splitlines() if line]
    # Repeat with small variations so the trainer finds enough merges for the vocabulary.
    return lines + [line.lower() for line in lines] + [line.upper() for line in lines]


def train_tokenizer() -> Any:
    """A byte-level BPE `tokenizers.Tokenizer` with the special tokens first (ids 0-4)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=1,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus_lines(), trainer=trainer)
    return tokenizer


def build(out: Path, seed: int) -> Manifest:
    """Write the tiny model into `out` (replacing it atomically) and return its manifest."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=train_tokenizer(),
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[IM_START, IM_END],
        model_max_length=ARCH["max_position_embeddings"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=ids[BOS],
        eos_token_id=ids[EOS],
        pad_token_id=ids[PAD],
        tie_word_embeddings=False,
        torch_dtype="float32",
        **ARCH,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    generation = GenerationConfig(
        bos_token_id=ids[BOS], eos_token_id=[ids[EOS], ids[IM_END]], pad_token_id=ids[PAD], max_new_tokens=64
    )
    with atomic_output(out) as stage:
        model.save_pretrained(stage)
        tokenizer.save_pretrained(stage)
        generation.save_pretrained(stage)
        add_compat_config(stage)
        _drop_version_keys(stage)
        manifest = Manifest(
            name=NAME,
            source=Source(kind="tiny", uri="tiny-model", revision=f"seed={seed}"),
            files=hash_files(stage),
            dtype="float32",
            max_model_len=ARCH["max_position_embeddings"],
            created_at=datetime.fromtimestamp(0, UTC),  # fixed: same seed, same bytes
            extra={"seed": seed, "parameters": sum(p.numel() for p in model.parameters())},
        )
        write_manifest(stage, manifest)
    return manifest


def _drop_version_keys(folder: Path) -> None:
    """Keep the output independent of the installed transformers patch version."""
    for name in ("config.json", "generation_config.json"):
        path = folder / name
        data = json.loads(path.read_text(encoding="utf-8"))
        data.pop("transformers_version", None)
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def run(args: argparse.Namespace) -> int:
    manifest = build(Path(args.dir), args.seed)
    total = sum(entry.size for entry in manifest.files)
    print(f"tiny model written to {args.dir} ({len(manifest.files)} files, {total / 1e6:.1f} MB, seed {args.seed})")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("tiny-model", help="write a tiny random Llama model for tests")
    parser.add_argument("dir", help="output folder (replaced)")
    parser.add_argument("--seed", type=int, default=0, help="random seed for the weights (default 0)")
    parser.set_defaults(func=run)
