"""An endpoint's settings (`EndpointConfig`) and the platform's limits (`Limits`).

`EndpointConfig` holds what RunPod calls an endpoint's configuration (workers
min/max, idle timeout, scaler, execution timeout, env) plus what stands in for
its container image here: the argv of one worker process and its working
folder. Durations are seconds (floats); the REST and GraphQL shapes, which
count the execution timeout in milliseconds, are converted in `management`.

`Limits` holds RunPod's documented numbers (rate limits, `?wait` bounds,
result retention, policy bounds); tests may shrink them to stay fast. The last
group (`take_hold`, `stop_poll_hold`, `stopping_take_hold`) are this platform's
own choices where RunPod publishes nothing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCALER_TYPES = ("QUEUE_DELAY", "REQUEST_COUNT")
DAY_S = 86_400.0


class ConfigError(ValueError):
    """An endpoint setting or job policy that RunPod would refuse."""


@dataclass(frozen=True)
class EndpointConfig:
    """One endpoint: the worker process to run and how RunPod would scale and bill it.

    Defaults are RunPod's endpoint defaults (3 max workers, 0 min, idle timeout
    5 s, QUEUE_DELAY 4 s, execution timeout 600 s).
    """

    worker_command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    workers_min: int = 0
    workers_max: int = 3
    idle_timeout: float = 5.0
    scaler_type: str = "QUEUE_DELAY"
    scaler_value: float = 4
    container_start_delay: float = 0.0  # seconds between "container start" and the worker process running
    gpu_hourly_rate: float = 0.0  # USD per worker-hour
    bill_initializing: bool = True  # the bill's default reading (both are always reported)
    execution_timeout: float = 600.0
    cwd: str | Path | None = None
    # --- beyond the brief's names
    gpu_type: str = "LOCAL"  # the `gpu` query parameter of the worker webhooks
    stop_grace: float = 10.0  # SIGTERM, then SIGKILL after this many seconds (Docker's default)
    max_job_retries: int = 3  # re-queues of a job whose worker died before it is FAILED (RunPod: undocumented)
    flashboot: str = "OFF"  # stored and reported; no effect on start-up time here

    def validate(self, limits: Limits | None = None) -> EndpointConfig:
        """Self, or ConfigError naming the first setting RunPod would refuse."""
        limits = limits or Limits()
        if not self.worker_command or not all(isinstance(part, str) and part for part in self.worker_command):
            raise ConfigError("worker_command must be a non-empty list of non-empty strings (one process's argv)")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.env.items()):
            raise ConfigError("env must map strings to strings")
        if not 0 <= self.workers_min <= self.workers_max:
            raise ConfigError(f"need 0 <= workers_min <= workers_max, got {self.workers_min}/{self.workers_max}")
        if self.idle_timeout < 0 or self.container_start_delay < 0 or self.stop_grace < 0:
            raise ConfigError("idle_timeout, container_start_delay and stop_grace must be >= 0")
        if self.scaler_type not in SCALER_TYPES:
            raise ConfigError(f"scaler_type must be one of {SCALER_TYPES}, got {self.scaler_type!r}")
        if self.scaler_value < 1:
            raise ConfigError(f"scaler_value must be >= 1, got {self.scaler_value}")
        if self.gpu_hourly_rate < 0:
            raise ConfigError("gpu_hourly_rate must be >= 0")
        if self.max_job_retries < 0:
            raise ConfigError("max_job_retries must be >= 0")
        timeout_ms = self.execution_timeout * 1000
        if not limits.execution_timeout_min_ms <= timeout_ms <= limits.execution_timeout_max_ms:
            raise ConfigError(
                f"execution_timeout {self.execution_timeout} s is outside "
                f"[{limits.execution_timeout_min_ms / 1000}, {limits.execution_timeout_max_ms / 1000}] s"
            )
        return self

    def replace(self, **changes: Any) -> EndpointConfig:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Limits:
    """RunPod's documented limits (docs.runpod.io, serverless endpoint operations and job policies)."""

    # requests per 10 s, per endpoint (RunPod counts per endpoint and key; one key here)
    run_per_10s: int = 1000
    runsync_per_10s: int = 2000
    status_per_10s: int = 2000  # /status, /status-sync and /stream together
    cancel_per_10s: int = 100
    purge_per_10s: int = 2
    # requests open at once
    runsync_concurrent: int = 400
    # queue limit: 429 when the queue is over both numbers
    queue_floor: int = 50
    queue_per_max_worker: int = 500
    # bodies
    run_payload_bytes: int = 10 * 1024 * 1024
    runsync_payload_bytes: int = 20 * 1024 * 1024
    # /runsync ?wait (ms): default and clamp
    runsync_wait_default_ms: int = 90_000
    runsync_wait_min_ms: int = 1_000
    runsync_wait_max_ms: int = 300_000
    # result retention after completion (s)
    retention_run: float = 1800.0
    retention_runsync: float = 60.0
    # job policy bounds (ms)
    ttl_default_ms: int = int(DAY_S * 1000)
    ttl_min_ms: int = 10_000
    ttl_max_ms: int = int(7 * DAY_S * 1000)
    execution_timeout_min_ms: int = 5_000
    execution_timeout_max_ms: int = int(7 * DAY_S * 1000)
    # --- this platform's choices (RunPod publishes none)
    take_hold: float = 10.0  # job-take long-poll held this long before 204
    stop_poll_hold: float = 10.0  # job-stop long-poll
    stopping_take_hold: float = 0.2  # a stopping worker's job-take: 204 after this (keeps the SDK loop from spinning)
    tick: float = 0.05  # the scaler's and the timers' resolution (s)
    openai_wait_s: float = 600.0  # /openai/v1: how long a request waits for its answer (the openai client's timeout)
