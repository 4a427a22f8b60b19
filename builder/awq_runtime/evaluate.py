"""Perplexity of a causal LM on one long token sequence, in non-overlapping windows."""

from __future__ import annotations

import math

import torch
from tqdm import tqdm


@torch.no_grad()
def perplexity(model, token_ids: list[int], window: int, desc: str) -> float:
    """exp(mean negative log-likelihood) over every predicted token (first token of a window has no context)."""
    if len(token_ids) < 2:
        raise ValueError("the held-out text must have at least 2 tokens")
    device = next(model.parameters()).device
    ids = torch.tensor(token_ids, dtype=torch.long, device=device)
    total_nll, count = 0.0, 0
    starts = list(range(0, len(token_ids) - 1, window))
    for start in tqdm(starts, desc=f"perplexity {desc}", leave=False):
        chunk = ids[start : start + window].unsqueeze(0)
        if chunk.shape[1] < 2:
            continue
        logits = model(input_ids=chunk, use_cache=False).logits.float()
        nll = torch.nn.functional.cross_entropy(logits[0, :-1], chunk[0, 1:], reduction="sum")
        total_nll += nll.item()
        count += chunk.shape[1] - 1
    return math.exp(total_nll / count)
