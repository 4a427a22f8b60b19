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
  overhead, by kind: `boot` (the container start RunPod bills before Python runs,
  given as `boot_seconds`, then the process until `worker_ready`),
  `engine_start`, and `idle`.

So the seconds billed to jobs plus the overhead always equal the running
seconds, however many jobs overlap. Money is seconds times the hourly rate.

The meter also measures the worker's paces for reservations (`paces()`, each the
slowest of the recent measurements, `Paces`):

- the engine's throughput: over each busy period (jobs in flight, engine ready)
  the wall seconds per unit of work, where a unit is a completion token and a
  prompt token weighs PREFILL_WEIGHT (prefill runs many tokens per step);
- per request, from each one-sequence request that ran: its wall seconds per
  generated token when generation dominates it, per prompt token when its prompt
  does. Each is an upper bound of that part's pace (the other part's seconds are
  in it), measured alone or inside a batch, so a lone job after a batch or a long
  generation after a prompt-heavy job is never bounded by a pace it cannot keep.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

MIN_WORK_FOR_ESTIMATE = 16.0  # shorter busy periods say more about latency than pace
MIN_TOKENS_FOR_PACE = 8  # a request's part shorter than this says more about its floor than its pace
ESTIMATE_WINDOW = 200
PREFILL_WEIGHT = 0.125
OVERHEAD_KINDS = ("boot", "engine_start", "idle")


@dataclass(frozen=True)
class Paces:
    """The slowest paces measured (seconds), each bounding one part of a job's time:
    `prompt` per prompt token of one request, `completion` per token of one sequence (both
    per request, wherever it ran: alone or in a batch), `busy` per work unit of the engine as
    a whole (busy periods: the throughput that work admitted together shares)."""

    prompt: float
    completion: float
    busy: float


def work_units(prompt_tokens: float, completion_tokens: float) -> float:
    """A job's work for pace and reservations: completion tokens plus weighted prompt tokens."""
    return max(0.0, completion_tokens) + PREFILL_WEIGHT * max(0.0, prompt_tokens)


@dataclass
class _Job:
    started: float
    billed: float = 0.0
    tokens_in_segment: int = 0
    tokens: int = 0
    engine_wait: float = 0.0
    silent: bool = False


class Meter:
    def __init__(
        self,
        default_seconds_per_token: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        boot_seconds: float = 0.0,
    ) -> None:
        self._clock = clock
        self._default_spt = default_seconds_per_token
        self._started = clock()
        self._mark = self._started
        self._boot_seconds = boot_seconds
        self._overhead = dict.fromkeys(OVERHEAD_KINDS, 0.0)
        self._overhead["boot"] = boot_seconds
        self._ready = False
        self._engine_starting = False
        self._jobs: dict[str, _Job] = {}
        self._paces: deque[float] = deque(maxlen=ESTIMATE_WINDOW)
        self._prompt_paces: deque[float] = deque(maxlen=ESTIMATE_WINDOW)
        self._completion_paces: deque[float] = deque(maxlen=ESTIMATE_WINDOW)
        self._busy_seconds = 0.0  # the busy period in progress: engine-ready seconds with jobs in flight
        self._busy_work = 0.0

    def _idle_kind(self) -> str:
        if not self._ready:  # before the worker takes jobs (an engine started at boot included)
            return "boot"
        return "engine_start" if self._engine_starting else "idle"

    def _close_segment(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._mark)
        self._mark = now
        if not self._jobs or self._engine_starting:
            self._overhead[self._idle_kind()] += elapsed
            if self._engine_starting:
                for job in self._jobs.values():
                    job.engine_wait += elapsed
                    job.tokens_in_segment = 0
            return
        self._busy_seconds += elapsed
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
    def worker_ready(self) -> None:
        """The worker takes jobs: from now on, seconds without jobs are idle, not boot."""
        if not self._ready:
            self._close_segment()
            self._ready = True

    def job_started(self, job_id: str, *, reports_tokens: bool = True) -> None:
        """A job starts using the engine; `reports_tokens=False` for a silent job (tokens known at its end)."""
        if job_id in self._jobs:
            raise ValueError(f"job {job_id!r} is already being metered")
        self._close_segment()
        self._ready = True
        self._jobs[job_id] = _Job(started=self._mark, silent=not reports_tokens)

    def add_tokens(self, job_id: str, n: int) -> None:
        """Tokens (prompt and generated) `job_id` processed since its last report."""
        job = self._jobs.get(job_id)
        if job is None:
            raise KeyError(f"job {job_id!r} is not being metered (job_started was not called)")
        if not job.silent:
            job.tokens_in_segment += max(0, n)
        job.tokens += max(0, n)

    def job_finished(
        self,
        job_id: str,
        *,
        work: float = 0.0,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        sequences: int = 1,
    ) -> float:
        """Close the job; return the worker seconds billed to it. `work`: its work units
        (`work_units` of its usage), for the pace of the busy period it belongs to; its tokens
        and `sequences` (prompts times answers each), for the per-request paces."""
        if job_id not in self._jobs:
            raise KeyError(f"job {job_id!r} is not being metered (job_started was not called)")
        self._close_segment()
        job = self._jobs.pop(job_id)
        self._request_paces(self._clock() - job.started - job.engine_wait, prompt_tokens, completion_tokens, sequences)
        self._busy_work += max(0.0, work)
        if not self._jobs:  # the busy period ends: its pace is one measurement
            if self._busy_work >= MIN_WORK_FOR_ESTIMATE and self._busy_seconds > 0:
                self._paces.append(self._busy_seconds / self._busy_work)
            self._busy_seconds = self._busy_work = 0.0
        return job.billed

    def _request_paces(self, wall: float, prompt: int, completion: int, sequences: int) -> None:
        if sequences != 1 or wall <= 0:  # several sequences: the busy periods' pace bounds them
            return
        if completion >= MIN_TOKENS_FOR_PACE and completion >= PREFILL_WEIGHT * prompt:
            self._completion_paces.append(wall / completion)
        elif prompt >= MIN_TOKENS_FOR_PACE / PREFILL_WEIGHT:
            self._prompt_paces.append(wall / prompt)

    def running_billed(self) -> dict[str, float]:
        """Worker seconds billed so far to each job in flight (the segment in progress closed)."""
        self._close_segment()
        return {job_id: job.billed for job_id, job in self._jobs.items()}

    def engine_starting(self) -> None:
        """From now until `engine_ready`, seconds are overhead even with jobs waiting."""
        self._close_segment()
        self._engine_starting = True

    def engine_ready(self) -> None:
        self._close_segment()
        self._engine_starting = False

    # --- readings -------------------------------------------------------------
    def running_seconds(self) -> float:
        """Billed seconds so far: the boot seconds before the meter, then its clock."""
        return self._boot_seconds + self._clock() - self._started

    def overhead_by_kind(self) -> dict[str, float]:
        """Overhead seconds so far by kind, including the open segment when it is overhead."""
        out = dict(self._overhead)
        if not self._jobs or self._engine_starting:
            out[self._idle_kind()] += max(0.0, self._clock() - self._mark)
        return out

    def overhead_seconds(self) -> float:
        return sum(self.overhead_by_kind().values())

    def in_flight(self) -> int:
        return len(self._jobs)

    def seconds_per_token(self) -> float:
        """The engine's worst-case pace (seconds per work unit): the slowest busy period among
        the recent ones; the settings' default before any measurement."""
        return max(self._paces) if self._paces else self._default_spt

    def paces(self) -> Paces:
        """The slowest recent paces, each defaulting to the settings' pace (prompt tokens at their
        weight) before it is measured."""
        default = self._default_spt
        return Paces(
            prompt=max(self._prompt_paces) if self._prompt_paces else default * PREFILL_WEIGHT,
            completion=max(self._completion_paces) if self._completion_paces else default,
            busy=self.seconds_per_token(),
        )
