"""A worker's exposure: the worst case of what RunPod will still bill it (pure).

The budget reserves worker time, not job time. Jobs in flight on one worker run
at once (vLLM batches them), so the worker's remaining bill is NOT the sum of
their worst cases but the longest of them, where each job's worst case counts
the work admitted before it at the engine's slowest measured throughput (it may
wait behind that work), plus its own at the slowest per-request paces: prompt
and completion apart, so a batch's throughput or a prompt-heavy job never makes
a lone long generation look cheap (`handler.billing.Paces`). On top come the
engine's start-up when a job needs an engine that is not running (up to
ENGINE_START_TIMEOUT: as long as the worker lets it run), and the idle tail
after the last job: the endpoint's idle timeout before RunPod scales the worker
down, one heartbeat not yet settled, and the process's exit.

The whole endpoint also keeps a margin free of jobs: workers RunPod may still
start for queued jobs are billed their boot and idle tail even when they refuse
every job (`fleet_margin_seconds`).

Work is in units of `handler.billing.work_units` (completion tokens plus
weighted prompt tokens); times are seconds on the worker's monotonic clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from handler.billing import Paces, work_units

REQUEST_FLOOR_S = 1.0  # a request's fixed cost beyond its tokens (HTTP, scheduling), whatever its size
PROCESS_START_S = 2.0  # a worker's process to ready for jobs (0.9 s measured, bench/cold_start_bench.py)
EXIT_ALLOWANCE_S = 1.0  # a worker's life after its last settlement (engine stopped, interpreter exit)
ENGINE_STOP_S = 15.0  # a start past ENGINE_START_TIMEOUT is stopped: SIGTERM's grace, then SIGKILL (handler.engine)


def alone_seconds(prompt_tokens: float, sequence_tokens: float, work: float, paces: Paces) -> float:
    """The longest a request's own work can take: its prompt and its longest sequence at the
    per-request paces, or all its work at the engine's pace (a list of prompts, `n`), whichever
    is longer."""
    latency = max(0.0, prompt_tokens) * paces.prompt + max(0.0, sequence_tokens) * paces.completion
    return max(latency, max(0.0, work) * paces.busy)


def max_tokens_for_cost(
    max_cost_usd: float, hourly_rate: float, prompt_tokens: float, sequences: int, paces: Paces
) -> float:
    """The most tokens each sequence of a request may generate so that, alone, it costs at most
    `max_cost_usd` (`alone_seconds` plus the request floor): inf when nothing is priced; under 1
    when not even one token is covered."""
    if max_cost_usd <= 0 or hourly_rate <= 0:
        return float("inf")
    seconds = max_cost_usd * 3600.0 / hourly_rate - REQUEST_FLOOR_S
    by_latency = (seconds - prompt_tokens * paces.prompt) / paces.completion if paces.completion > 0 else float("inf")
    if paces.busy > 0:
        by_work = (seconds / paces.busy - work_units(prompt_tokens, 0)) / max(1, sequences)
    else:
        by_work = float("inf")
    return min(by_latency, by_work)


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

    def admit(self, job_id: str, work: float, alone_s: float, busy_pace: float) -> float:
        """Admit a job; return its worst-case seconds: the work admitted before it at the engine's
        pace, then its own (`alone_s`), then the request floor."""
        worst = max(0.0, self.work()) * busy_pace + max(0.0, alone_s) + REQUEST_FLOOR_S
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
    `workers_max` of them for jobs that queue before it is scaled to zero (handler.app)."""
    return max(0, workers_max) * (max(0.0, boot_s) + max(0.0, tail_s))


def exposure_seconds(remaining_jobs_s: float, engine_start_s: float, idle_tail_s: float) -> float:
    """What the worker may still be billed: its engine start (if a job needs it), its longest
    in-flight job, and its idle tail."""
    return max(0.0, engine_start_s) + max(0.0, remaining_jobs_s) + max(0.0, idle_tail_s)
