"""A worker's exposure: the worst case of what RunPod will still bill it (pure).

The budget reserves worker time, not job time. Jobs in flight on one worker run
at once (vLLM batches them), so the worker's remaining bill is NOT the sum of
their worst cases but the longest of them, where each job's worst case counts
the work admitted before it (it may wait behind that work) plus its own, at the
slowest measured pace. On top come the engine's start-up when a job needs an
engine that is not running, and the idle tail after the last job: the
endpoint's idle timeout before RunPod scales the worker down, one heartbeat of
overhead not yet settled, and the process's exit.

The whole endpoint also keeps a margin free of jobs: workers RunPod may still
start for queued jobs are billed their boot and idle tail even when they refuse
every job (`fleet_margin_seconds`).

Work is in units of `handler.billing.work_units` (completion tokens plus
weighted prompt tokens); times are seconds on the worker's monotonic clock.
"""

from __future__ import annotations

from dataclasses import dataclass

REQUEST_FLOOR_S = 1.0  # a request's fixed cost beyond its tokens (HTTP, scheduling), whatever its size
PROCESS_START_S = 2.0  # a worker's process to ready for jobs (0.9 s measured, bench/cold_start_bench.py)
EXIT_ALLOWANCE_S = 1.0  # a worker's life after its last settlement (engine stopped, interpreter exit)


def prompt_tokens_bound(prompt_chars: int, chars_per_token: float) -> float:
    """At most this many prompt tokens: `chars_per_token` is the fewest characters per token
    measured on this model (1.0, a safe floor for BPE vocabularies, before any measurement)."""
    return prompt_chars / max(chars_per_token, 1e-6)


def job_worst_seconds(own_work: float, work_ahead: float, pace: float) -> float:
    """The longest a job can take: the work admitted before it, then its own, at `pace`."""
    return (max(0.0, work_ahead) + max(0.0, own_work)) * pace


def max_work_for_cost(max_cost_usd: float, hourly_rate: float, pace: float) -> float:
    """The most work a job may do so that, alone, it costs at most `max_cost_usd`: its request
    floor and its work at `pace` (inf: no cap; negative: not even the floor is covered)."""
    if max_cost_usd <= 0 or hourly_rate <= 0 or pace <= 0:
        return float("inf")
    return (max_cost_usd * 3600.0 / hourly_rate - REQUEST_FLOOR_S) / pace


@dataclass
class _Admitted:
    work: float
    worst: float  # seconds from when it starts running
    ends_by: float | None = None  # set when it starts running


class InFlight:
    """The jobs admitted on this worker and the worst case of when each ends."""

    def __init__(self) -> None:
        self._jobs: dict[str, _Admitted] = {}

    def work(self) -> float:
        return sum(job.work for job in self._jobs.values())

    def admit(self, job_id: str, work: float, pace: float) -> float:
        """Admit a job; return its worst-case seconds (behind the work already admitted)."""
        worst = job_worst_seconds(work, self.work(), pace) + REQUEST_FLOOR_S
        self._jobs[job_id] = _Admitted(work=work, worst=worst)
        return worst

    def running(self, job_id: str, now: float) -> None:
        job = self._jobs.get(job_id)
        if job is not None:
            job.ends_by = now + job.worst

    def done(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)

    def __len__(self) -> int:
        return len(self._jobs)

    def remaining_seconds(self, now: float) -> float:
        """The longest any admitted job may still take (a job not yet running: all of its worst case)."""
        return max(
            (job.worst if job.ends_by is None else max(0.0, job.ends_by - now) for job in self._jobs.values()),
            default=0.0,
        )


def idle_tail_seconds(idle_timeout_s: float, heartbeat_s: float) -> float:
    """What a worker is billed after its last job however it ends: the endpoint's idle timeout,
    one heartbeat not yet settled, and its process closing after the last settlement."""
    return max(0.0, idle_timeout_s) + max(0.0, heartbeat_s) + EXIT_ALLOWANCE_S


def fleet_margin_seconds(workers_max: int, boot_s: float, tail_s: float) -> float:
    """Worker-seconds the budget keeps free for workers RunPod may still start: each one is billed
    its boot and its idle tail even if it refuses every job, and the endpoint starts up to
    `workers_max` of them for jobs that queue (after that, `BUDGET_SCALE_TO_ZERO` stops starts)."""
    return max(0, workers_max) * (max(0.0, boot_s) + max(0.0, tail_s))


def exposure_seconds(remaining_jobs_s: float, engine_start_s: float, idle_tail_s: float) -> float:
    """What the worker may still be billed: its engine start (if a job needs it), its longest
    in-flight job, and its idle tail."""
    return max(0.0, engine_start_s) + max(0.0, remaining_jobs_s) + max(0.0, idle_tail_s)
