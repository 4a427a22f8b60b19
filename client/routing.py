"""Size routing: a job's estimated tokens pick the small, medium or large endpoint tier.

Estimated tokens = prompt tokens + `max_tokens` (the most it may generate),
summed over the items of a batch job, read with the worker's own job parser. Prompt tokens come from the model's
tokenizer when one is given (anything with `encode(text) -> list`), else from
the common estimate of one token per 4 characters, rounded up. The estimate is
what routing needs: which GPU tier a request belongs on, not an exact count.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from client.fallback import TierPair
from core.contract import DEFAULT_MAX_TOKENS, EngineRequest, JobLimits, parse_job
from core.errors import InputError

SizeTier = Literal["small", "medium", "large"]
ORDER: tuple[SizeTier, ...] = ("small", "medium", "large")
CHARS_PER_TOKEN = 4
_UNLIMITED = 1 << 62  # the worker's limits are its own: routing only estimates


class Tokenizer(Protocol):
    def encode(self, text: str) -> Sequence[int]: ...


def count_tokens(text: str, tokenizer: Tokenizer | None = None) -> int:
    if tokenizer is not None:
        return len(tokenizer.encode(text))
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def estimate_tokens(
    job_input: Mapping[str, Any], tokenizer: Tokenizer | None = None, default_max_tokens: int = DEFAULT_MAX_TOKENS
) -> int:
    """Prompt tokens plus `max_tokens`, over every item of a batch job, read by the worker's own
    parser (core.contract). Input the worker would refuse counts nothing: the smallest tier
    refuses it as well as any."""
    try:
        job = parse_job(job_input, JobLimits(default_max_tokens, _UNLIMITED, _UNLIMITED, _UNLIMITED, 0.0))
    except InputError:
        return 0
    return sum(
        sum(count_tokens(text, tokenizer) for text in item.prompt_texts) + item.max_tokens
        for item in job.items
        if isinstance(item, EngineRequest)
    )


@dataclass(frozen=True)
class Thresholds:
    """Below `small_below` tokens: small; below `medium_below`: medium; else large (seed 004's 1000/4000)."""

    small_below: int = 1000
    medium_below: int = 4000

    def __post_init__(self) -> None:
        if not 0 < self.small_below <= self.medium_below:
            raise ValueError(f"thresholds must satisfy 0 < small_below <= medium_below, got {self}")

    def tier(self, tokens: int) -> SizeTier:
        if tokens < self.small_below:
            return "small"
        return "medium" if tokens < self.medium_below else "large"


@dataclass(frozen=True)
class Router:
    """Each size tier's spot/on-demand pair. A missing tier uses the next larger one configured."""

    tiers: Mapping[SizeTier, TierPair]
    thresholds: Thresholds = field(default_factory=Thresholds)
    tokenizer: Tokenizer | None = None
    default_max_tokens: int = DEFAULT_MAX_TOKENS

    def __post_init__(self) -> None:
        if not self.tiers:
            raise ValueError("a router needs at least one tier")
        unknown = set(self.tiers) - set(ORDER)
        if unknown:
            raise ValueError(f"unknown tiers {sorted(unknown)}; tiers are {list(ORDER)}")

    def route(self, job_input: Mapping[str, Any]) -> tuple[SizeTier, TierPair]:
        """(tier name, endpoint pair) for a job; a tier larger than needed serves when the right one is absent."""
        wanted = self.thresholds.tier(estimate_tokens(job_input, self.tokenizer, self.default_max_tokens))
        for name in ORDER[ORDER.index(wanted) :]:
            if name in self.tiers:
                return name, self.tiers[name]
        largest = max(self.tiers, key=ORDER.index)
        raise ValueError(f"job needs the {wanted!r} tier or larger; the largest configured is {largest!r}")
