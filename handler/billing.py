"""What jobs really cost: worker seconds apportioned across the jobs in flight (pure).

RunPod bills a worker per second from start to scale-down. The meter splits
those seconds, from the moment it starts, into segments between events (a job
starts, a job finishes, the engine starts or becomes ready):

- a segment with jobs in flight is shared by those jobs in proportion to the
  tokens each processed during it (equally when none reported tokens in it).
  A job whose tokens are only known at its end (a plain, non-streamed request)
  is "silent": in each segment it weighs as much as the average job that did
  report, which is what continuous batching does (one token per step for each
  running sequence);
- a segment with no job in flight, or while the engine is starting, is worker
  overhead (boot, engine start-up, idle).

So the seconds billed to jobs plus the overhead always equal the running
seconds, however many jobs overlap. Money is seconds times the hourly rate.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

MIN_TOKENS_FOR_ESTIMATE = 4
ESTIMATE_WINDOW = 200
ESTIMATE_QUANTILE = 0.9


def cost_usd(seconds: float, hourly_rate: float) -> float:
    return seconds * hourly_rate / 3600.0


def worst_case_usd(max_tokens: int, seconds_per_token: float, hourly_rate: float) -> float:
    """An upper estimate of one job's cost: every token at the slowest measured pace, alone."""
    return cost_usd(max(1, max_tokens) * seconds_per_token, hourly_rate)


@dataclass
class _Job:
    started: float
    billed: float = 0.0
    tokens_in_segment: int = 0
    tokens: int = 0
    engine_wait: float = 0.0
    silent: bool = False


class Meter:
    def __init__(self, default_seconds_per_token: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._default_spt = default_seconds_per_token
        self._started = clock()
        self._mark = self._started
        self._overhead = 0.0
        self._engine_starting = False
        self._jobs: dict[str, _Job] = {}
        self._paces: deque[float] = deque(maxlen=ESTIMATE_WINDOW)

    def _close_segment(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._mark)
        self._mark = now
        if not self._jobs or self._engine_starting:
            self._overhead += elapsed
            if self._engine_starting:
                for job in self._jobs.values():
                    job.engine_wait += elapsed
                    job.tokens_in_segment = 0
            return
        jobs = list(self._jobs.values())
        reporting = [j.tokens_in_segment for j in jobs if not j.silent]
        typical = sum(reporting) / len(reporting) if reporting else 0.0
        weights = [typical if j.silent else float(j.tokens_in_segment) for j in jobs]
        total = sum(weights)
        for job, weight in zip(jobs, weights, strict=True):
            share = weight / total if total else 1.0 / len(jobs)
            job.billed += elapsed * share
            job.tokens_in_segment = 0

    # --- events -------------------------------------------------------------
    def job_started(self, job_id: str, *, reports_tokens: bool = True) -> None:
        """A job starts using the engine; `reports_tokens=False` for a silent job (tokens known at its end)."""
        if job_id in self._jobs:
            raise ValueError(f"job {job_id!r} is already being metered")
        self._close_segment()
        self._jobs[job_id] = _Job(started=self._mark, silent=not reports_tokens)

    def add_tokens(self, job_id: str, n: int) -> None:
        """Tokens (prompt and generated) `job_id` processed since its last report."""
        job = self._jobs.get(job_id)
        if job is None:
            raise KeyError(f"job {job_id!r} is not being metered (job_started was not called)")
        if not job.silent:
            job.tokens_in_segment += max(0, n)
        job.tokens += max(0, n)

    def job_finished(self, job_id: str) -> float:
        """Close the job; return the worker seconds billed to it."""
        if job_id not in self._jobs:
            raise KeyError(f"job {job_id!r} is not being metered (job_started was not called)")
        self._close_segment()
        job = self._jobs.pop(job_id)
        working = self._mark - job.started - job.engine_wait
        if job.tokens >= MIN_TOKENS_FOR_ESTIMATE and working > 0:
            self._paces.append(working / job.tokens)
        return job.billed

    def engine_starting(self) -> None:
        """From now until `engine_ready`, seconds are overhead even with jobs waiting."""
        self._close_segment()
        self._engine_starting = True

    def engine_ready(self) -> None:
        self._close_segment()
        self._engine_starting = False

    # --- readings -------------------------------------------------------------
    def running_seconds(self) -> float:
        return self._clock() - self._started

    def overhead_seconds(self) -> float:
        """Overhead so far, including the open segment when no job is in flight."""
        open_segment = self._clock() - self._mark
        return self._overhead + (open_segment if not self._jobs or self._engine_starting else 0.0)

    def in_flight(self) -> int:
        return len(self._jobs)

    def seconds_per_token(self) -> float:
        """Worst-case pace for reservations: the 90th percentile of recent jobs' wall
        seconds per token (engine start excluded); the settings' default before any data."""
        if not self._paces:
            return self._default_spt
        ordered = sorted(self._paces)
        return ordered[min(len(ordered) - 1, int(ESTIMATE_QUANTILE * len(ordered)))]
