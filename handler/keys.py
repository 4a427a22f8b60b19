"""Every Redis key the worker uses, in one place.

Keys that one Lua script touches together share a hash tag (the part in braces),
so each script runs unchanged on Redis Cluster and managed Redis services:

    frugal:{cache:<ns>:<digest>}                 a cached answer (orjson bytes)
    frugal:{cache:<ns>:<digest>}:lock            its single-flight lock (token, PX)
    frugal:{stats:<ns>}:cache:<day>              hash: hits, misses, saved_micro
    frugal:{budget:<bns>:<day>}:state            hash: spent, reserved, jobs, job_spent, boot,
                                                 engine_start, idle (micro-dollars), alerted
    frugal:{budget:<bns>:<day>}:res              hash: worker -> reserved micro-dollars
    frugal:{budget:<bns>:<day>}:res_exp          zset: worker -> expiry (server ms)
    frugal:{budget:<bns>:<day>}:settled          hash: job id -> settled micro-dollars
    frugal:{budget:<bns>:<day>}:overhead         hash: "<worker>:<kind>" -> cumulative micro-dollars
    frugal:{pause:<bns>}                         the endpoint's workers before the budget scaled it to
                                                 zero (orjson), for `python -m handler.resume`

`<ns>` is CACHE_NAMESPACE (it isolates deployments sharing one Redis), `<bns>`
BUDGET_NAMESPACE (apart, so rotating the cache does not reset the spend); `<day>`
is the budget day (``YYYY-MM-DD`` in BUDGET_TIMEZONE), so a new day starts
with new keys and nothing has to reset anything.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "frugal"

# How long the per-day keys live.
STATE_KEEP_SECONDS = 400 * 86_400  # spend history for `python -m handler.stats spend`
JOBS_KEEP_SECONDS = 3 * 86_400  # reservations and settled ids: only for idempotency
STATS_KEEP_SECONDS = 400 * 86_400


def _clean(part: str) -> str:
    """Braces inside a key part would change the hash tag: refuse them."""
    if "{" in part or "}" in part:
        raise ValueError(f"key part {part!r} must not contain braces")
    return part


def cache_entry(namespace: str, digest: str) -> str:
    return f"{PREFIX}:{{cache:{_clean(namespace)}:{_clean(digest)}}}"


def cache_lock(namespace: str, digest: str) -> str:
    return cache_entry(namespace, digest) + ":lock"


def cache_stats(namespace: str, day: str) -> str:
    return f"{PREFIX}:{{stats:{_clean(namespace)}}}:cache:{_clean(day)}"


@dataclass(frozen=True)
class BudgetKeys:
    """The keys of one budget day; all share one hash tag."""

    state: str
    reservations: str
    expiries: str
    settled: str
    overhead: str

    def all(self) -> list[str]:
        return [self.state, self.reservations, self.expiries, self.settled, self.overhead]


def budget_day(namespace: str, day: str) -> BudgetKeys:
    tag = f"{PREFIX}:{{budget:{_clean(namespace)}:{_clean(day)}}}"
    return BudgetKeys(
        state=f"{tag}:state",
        reservations=f"{tag}:res",
        expiries=f"{tag}:res_exp",
        settled=f"{tag}:settled",
        overhead=f"{tag}:overhead",
    )


PAUSE_KEEP_SECONDS = 30 * 86_400


def budget_pause(namespace: str) -> str:
    return f"{PREFIX}:{{pause:{_clean(namespace)}}}"


def hash_tag(key: str) -> str:
    """The part of `key` Redis Cluster hashes (as the cluster spec defines it)."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key
