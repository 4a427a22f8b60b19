"""Jobs: the record RunPod keeps per request, its policy, and the endpoint's queue.

A job moves IN_QUEUE -> IN_PROGRESS (a worker took it) -> COMPLETED | FAILED |
TIMED_OUT, or to CANCELLED from either of the first two. A job whose worker
died goes back to IN_QUEUE (`retries` counts it). `state()` is the body of
`/status`: `id`, `status`, and once taken `delayTime` (ms queued before the
latest take), `workerId`, and once finished `executionTime` (ms from take to
result), `output` and `error`.

The queue holds normal jobs before `lowPriority` ones (which also do not count
for scaling; see `scaler`), each first in, first out; a re-queued job goes to
the front of its queue.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from devtools.platform.config import ConfigError, Limits

FINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})
POLICY_KEYS = frozenset({"executionTimeout", "ttl", "lowPriority"})
_ids = itertools.count(1)


@dataclass(frozen=True)
class Policy:
    execution_timeout: float  # seconds
    ttl: float  # seconds, from submission
    low_priority: bool = False


def parse_policy(raw: Any, default_execution_timeout: float, limits: Limits) -> Policy:
    """A job's `policy` object, checked against RunPod's bounds (ConfigError: a 400)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError("policy must be an object")
    unknown = set(raw) - POLICY_KEYS
    if unknown:
        raise ConfigError(f"unknown policy fields {sorted(unknown)}; known: {sorted(POLICY_KEYS)}")
    timeout_ms = raw.get("executionTimeout", default_execution_timeout * 1000)
    ttl_ms = raw.get("ttl", limits.ttl_default_ms)
    low = raw.get("lowPriority", False)
    for name, value in (("executionTimeout", timeout_ms), ("ttl", ttl_ms)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"policy.{name} must be a number of milliseconds")
    if not limits.execution_timeout_min_ms <= timeout_ms <= limits.execution_timeout_max_ms:
        raise ConfigError(
            f"policy.executionTimeout must be in [{limits.execution_timeout_min_ms}, "
            f"{limits.execution_timeout_max_ms}] ms, got {timeout_ms}"
        )
    if not limits.ttl_min_ms <= ttl_ms <= limits.ttl_max_ms:
        raise ConfigError(f"policy.ttl must be in [{limits.ttl_min_ms}, {limits.ttl_max_ms}] ms, got {ttl_ms}")
    if not isinstance(low, bool):
        raise ConfigError("policy.lowPriority must be a boolean")
    return Policy(execution_timeout=timeout_ms / 1000, ttl=ttl_ms / 1000, low_priority=low)


def new_job_id(endpoint_id: str) -> str:
    return f"{next(_ids):06d}-{secrets.token_hex(4)}-{endpoint_id}"


@dataclass(eq=False)
class Job:
    id: str
    endpoint_id: str
    input: Any
    policy: Policy
    sync: bool = False  # submitted by /runsync (shorter result retention)
    webhook: str | None = None
    status: str = "IN_QUEUE"
    created: float = field(default_factory=time.monotonic)
    created_wall: float = field(default_factory=time.time)
    taken_at: float | None = None
    finished_at: float | None = None
    worker_id: str | None = None
    attempts: int = 0  # takes by a worker
    retries: int = 0  # re-queues after a worker died
    output: Any = None
    has_output: bool = False
    error: Any = None
    stop_pod: bool = False
    stream: list[Any] = field(default_factory=list)
    stream_read: int = 0
    expires_at: float = 0.0  # ttl deadline (monotonic)
    retain_until: float | None = None  # deleted after this once final

    def __post_init__(self) -> None:
        self.expires_at = self.created + self.policy.ttl

    @property
    def final(self) -> bool:
        return self.status in FINAL

    @property
    def deadline(self) -> float | None:
        """When an IN_PROGRESS job times out."""
        if self.status != "IN_PROGRESS" or self.taken_at is None:
            return None
        return self.taken_at + self.policy.execution_timeout

    def finish(self, status: str, now: float, retention: float) -> None:
        self.status, self.finished_at = status, now
        self.retain_until = min(now + retention, self.expires_at)

    def state(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "status": self.status}
        if self.taken_at is not None:
            body["delayTime"] = round((self.taken_at - self.created) * 1000)
            body["workerId"] = self.worker_id
        if self.finished_at is not None and self.taken_at is not None:
            body["executionTime"] = round((self.finished_at - self.taken_at) * 1000)
        if self.has_output and self.status in ("COMPLETED", "FAILED"):
            body["output"] = self.output
        if self.error is not None:
            body["error"] = self.error
        if self.retries:
            body["retries"] = self.retries
        return body

    def payload(self) -> dict[str, Any]:
        """What a worker's job-take receives."""
        return {"id": self.id, "input": self.input}


class JobQueue:
    """Queued jobs: normal ones first, then low-priority ones; FIFO within each."""

    def __init__(self) -> None:
        self._normal: deque[Job] = deque()
        self._low: deque[Job] = deque()

    def _lane(self, job: Job) -> deque[Job]:
        return self._low if job.policy.low_priority else self._normal

    def push(self, job: Job, *, front: bool = False) -> None:
        if front:
            self._lane(job).appendleft(job)
        else:
            self._lane(job).append(job)

    def pop(self) -> Job | None:
        for lane in (self._normal, self._low):
            if lane:
                return lane.popleft()
        return None

    def remove(self, job: Job) -> bool:
        try:
            self._lane(job).remove(job)
        except ValueError:
            return False
        return True

    def clear(self) -> list[Job]:
        jobs = [*self._normal, *self._low]
        self._normal.clear()
        self._low.clear()
        return jobs

    def __len__(self) -> int:
        return len(self._normal) + len(self._low)

    def __iter__(self) -> Iterator[Job]:
        return itertools.chain(self._normal, self._low)

    @property
    def normal(self) -> int:
        return len(self._normal)

    def overdue(self, now: float, threshold: float) -> int:
        """Normal jobs that have waited longer than `threshold` seconds (the queue is oldest first)."""
        count = 0
        for job in self._normal:
            if now - job.created <= threshold:
                break
            count += 1
        return count
