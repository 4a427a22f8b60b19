"""Taking endpoints out of rotation for a cool-down (a circuit breaker), and reading `/health`.

An endpoint's circuit opens when its `/health` says it cannot serve (or the
health call itself fails), when its configuration says it has no workers to give
(workers max 0), or after `failure_threshold` failed attempts in a row; it
closes again after `cooldown_s`. `codes` keeps why it opened, as a failure reason's
value, for the attempt it refuses. Pure logic plus an injectable clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


def health_verdict(health: dict[str, Any]) -> tuple[bool, str]:
    """(serves?, why) from a `/health` answer.

    A scale-to-zero endpoint with no workers at all is healthy (a worker starts
    on demand). It cannot serve when its workers are all throttled (no
    capacity) or all unhealthy.
    """
    workers = health.get("workers") or {}
    usable = sum(int(workers.get(k, 0)) for k in ("idle", "ready", "running", "initializing"))
    if usable == 0 and int(workers.get("throttled", 0)) > 0:
        return False, f"no capacity: {workers.get('throttled')} worker(s) throttled, none usable"
    if usable == 0 and int(workers.get("unhealthy", 0)) > 0:
        return False, f"{workers.get('unhealthy')} worker(s) unhealthy, none usable"
    return True, "ok"


@dataclass
class CircuitBreaker:
    cooldown_s: float = 60.0
    failure_threshold: int = 3
    health_interval_s: float | None = 30.0  # None: never check /health
    clock: Callable[[], float] = time.monotonic
    _open_until: dict[str, float] = field(default_factory=dict)
    _failures: dict[str, int] = field(default_factory=dict)
    _checked_at: dict[str, float] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    codes: dict[str, str] = field(default_factory=dict)  # why it is open: a FailureReason value

    def is_open(self, endpoint_id: str) -> bool:
        return self.clock() < self._open_until.get(endpoint_id, float("-inf"))

    def trip(self, endpoint_id: str, why: str, code: str = "circuit_open") -> None:
        self._open_until[endpoint_id] = self.clock() + self.cooldown_s
        self.reasons[endpoint_id] = why
        self.codes[endpoint_id] = code

    def record_success(self, endpoint_id: str) -> None:
        self._failures[endpoint_id] = 0

    def record_failure(self, endpoint_id: str, why: str) -> None:
        self._failures[endpoint_id] = self._failures.get(endpoint_id, 0) + 1
        if self._failures[endpoint_id] >= self.failure_threshold:
            self._failures[endpoint_id] = 0
            self.trip(endpoint_id, f"{self.failure_threshold} failures in a row, last: {why}")

    def health_due(self, endpoint_id: str) -> bool:
        if self.health_interval_s is None:
            return False
        last = self._checked_at.get(endpoint_id)
        return last is None or self.clock() - last >= self.health_interval_s

    def record_health(self, endpoint_id: str, health: dict[str, Any] | None, error: str | None = None) -> bool:
        """Note a health check's answer (None with `error` when the call failed); True when it serves."""
        self._checked_at[endpoint_id] = self.clock()
        serves, why = (False, f"health check failed: {error}") if health is None else health_verdict(health)
        if not serves:
            self.trip(endpoint_id, why)
        return serves
