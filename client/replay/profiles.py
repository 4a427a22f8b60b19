"""Seed 004's usage profiles as traces (pure).

    light   100 requests/day of about 5 s, in hourly bursts (a cold start each hour)
    medium  1,000 requests/day of about 3 s, in hourly bursts
    heavy   10,000 requests/day of about 2 s, nearly continuous

Within a burst, requests arrive at random over `burst_seconds`. Time is
compressed by shortening only the quiet gaps between bursts: a gap longer than
`quiet_gap` (the endpoint's idle timeout plus a margin, so the fleet has scaled
to zero and the next burst still starts cold) becomes `max(quiet_gap, gap /
compress)`. Gaps within a burst, the engine's start-up and generation are never
shortened, so each burst costs what it would cost uncompressed.

A share of the requests (`repeat_share`) repeats an earlier deterministic request
(the same input, temperature 0); of the others, half are deterministic and half
sampled (temperature 0.7). Requests ask for `seconds_per_request x
tokens_per_second` tokens: the pace of the model that will answer them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from client.errors import TraceError
from client.replay.trace import DETERMINISTIC, REPEAT, TraceEvent


@dataclass(frozen=True)
class Profile:
    name: str
    requests_per_day: float
    seconds_per_request: float
    bursts_per_day: float
    burst_seconds: float


PROFILES = {
    "light": Profile("light", 100, 5.0, 24, 60.0),
    "medium": Profile("medium", 1_000, 3.0, 24, 300.0),
    "heavy": Profile("heavy", 10_000, 2.0, 24, 3_000.0),
}

# tokens per second of one request, by the model that answers (measured on this machine's CPU)
MODEL_PACE = {"smollm2": 20.0, "tiny": 200.0}

_ASKS = (
    "What is {}? Answer in two sentences.",
    "Explain {} to a twelve-year-old.",
    "Give three facts about {}.",
    "Write a short paragraph about {}.",
    "Why does {} matter?",
    "Summarise the history of {} briefly.",
    "List two common misconceptions about {}.",
    "How would you teach {} in one lesson?",
)
_TOPICS = (
    "photosynthesis", "the water cycle", "plate tectonics", "the French Revolution", "black holes",
    "the immune system", "compound interest", "machine learning", "the Roman Empire", "volcanoes",
    "the printing press", "electric cars", "honey bees", "the Moon landing", "recycling",
    "the human heart", "rainbows", "the stock market", "coral reefs", "the Internet",
    "vaccines", "the Great Wall of China", "gravity", "chess", "the Amazon rainforest",
    "solar power", "DNA", "the Olympic Games", "earthquakes", "coffee",
    "the piano", "glaciers", "democracy", "penguins", "the speed of light",
    "bread baking", "the Silk Road", "tides", "antibiotics", "the periodic table",
)  # fmt: skip


def prompts() -> list[str]:
    """Real prompts for the real model, all different."""
    return [ask.format(topic) for topic in _TOPICS for ask in _ASKS]


def compress_gaps(times: list[float], compress: float, quiet_gap: float) -> list[float]:
    """Shorten each gap longer than `quiet_gap` to max(quiet_gap, gap / compress); keep the others."""
    if compress < 1:
        raise TraceError(f"compress must be >= 1, got {compress:g}")
    out: list[float] = []
    for i, t in enumerate(times):
        if not out:
            out.append(0.0)
            continue
        gap = t - times[i - 1]
        out.append(out[-1] + (max(quiet_gap, gap / compress) if gap > quiet_gap else gap))
    return out


def arrivals(profile: Profile, hours: float, rng: random.Random) -> list[float]:
    """Arrival times (s) over `hours`: bursts evenly spaced, requests uniform within each."""
    if hours <= 0:
        raise TraceError(f"hours must be > 0, got {hours:g}")
    bursts = max(1, round(profile.bursts_per_day * hours / 24))
    per_burst = profile.requests_per_day * hours / 24 / bursts
    spacing = hours * 3600 / bursts
    times: list[float] = []
    owed = 0.0
    for b in range(bursts):
        owed += per_burst
        count = int(owed)
        owed -= count
        start = b * spacing
        times += sorted(start + rng.uniform(0, min(profile.burst_seconds, spacing)) for _ in range(count))
    return times


def generate(
    profile: str | Profile,
    *,
    hours: float = 24.0,
    compress: float = 1.0,
    quiet_gap: float = 30.0,
    repeat_share: float = 0.3,
    model: str = "smollm2",
    tokens_per_second: float | None = None,
    seed: int = 0,
) -> list[TraceEvent]:
    prof = profile if isinstance(profile, Profile) else PROFILES.get(profile)
    if prof is None:
        raise TraceError(f"unknown profile {profile!r}: one of {', '.join(PROFILES)}")
    if not 0 <= repeat_share < 1:
        raise TraceError(f"repeat share must be in [0, 1), got {repeat_share:g}")
    pace = tokens_per_second if tokens_per_second is not None else MODEL_PACE.get(model)
    if pace is None or pace <= 0:
        raise TraceError(f"model {model!r}: give --tokens-per-second (known: {', '.join(MODEL_PACE)})")
    rng = random.Random(seed)
    times = compress_gaps(arrivals(prof, hours, rng), compress, quiet_gap)
    max_tokens = max(1, round(prof.seconds_per_request * pace))
    fresh = prompts()
    rng.shuffle(fresh)
    repeats = set(rng.sample(range(1, len(times)), round(repeat_share * len(times)))) if len(times) > 1 else set()
    events: list[TraceEvent] = []
    seen: list[dict[str, Any]] = []  # deterministic inputs so far, for repeats
    for i, at in enumerate(times):
        if i in repeats and seen:
            events.append(TraceEvent(at, rng.choice(seen), (DETERMINISTIC, REPEAT)))
            continue
        n = len(events)
        prompt = fresh[n % len(fresh)] + ("" if n < len(fresh) else f" (variant {n // len(fresh)})")
        greedy = rng.random() < 0.5 or not seen
        params: dict[str, object] = {"max_tokens": max_tokens, "temperature": 0.0 if greedy else 0.7}
        job: dict[str, Any] = {"prompt": prompt, "sampling_params": params}
        if greedy:
            seen.append(job)
        events.append(TraceEvent(at, job, (DETERMINISTIC,) if greedy else ()))
    return events
