"""One live endpoint: its job board, its workers, its ledger, and the control loop that scales them.

The control loop wakes on every submission and worker exit, and every
`Limits.tick` seconds, and then: deletes jobs past their ttl or retention,
times out jobs past their execution timeout (the job becomes TIMED_OUT and its
worker is stopped, as RunPod does), enforces a lowered workersMax (idle
workers stop, busy ones drain), stops workers idle past the idle timeout
(keeping workersMin), and starts workers the scaler asks for. With the
"no capacity" fault on, workers the scaler asks for are not started and are
reported as `throttled`. A worker that exits before it ever asked for a job
(a crash at start-up) delays the next start by 1, 2, 4 ... 30 s and is
reported `unhealthy` meanwhile, so a broken worker command does not spawn
processes in a tight loop.

This is also the library API for tests (`Platform.add_endpoint` returns one):
`wait_idle`, `wait_workers`, `ledger`, `billed_seconds`, `bill_usd`, `bill`,
`worker_logs`, `workers`, `submit`, `update`, `set_no_capacity`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devtools.platform.board import JobBoard
from devtools.platform.config import EndpointConfig, Limits
from devtools.platform.jobs import Job, parse_policy
from devtools.platform.ledger import Ledger, LedgerEntry
from devtools.platform.pool import EnvBuilder, Worker, WorkerPool
from devtools.platform.scaler import ScaleState, idle_to_stop, to_start

MAX_BACKOFF = 30.0
WAIT_POLL = 0.02


class Endpoint:
    def __init__(
        self, endpoint_id: str, config: EndpointConfig, limits: Limits, log_dir: Path, env_for: EnvBuilder
    ) -> None:
        self.id = endpoint_id
        self.limits = limits
        self.config = config.validate(limits)
        self.meta: dict[str, Any] = {}  # management fields with no effect here (name, image, gpu, ...)
        self.books = Ledger(config.gpu_hourly_rate, config.bill_initializing)
        self.board = JobBoard(endpoint_id, limits, self._on_held, lambda: self.config.max_job_retries)
        self.pool = WorkerPool(
            endpoint_id,
            ledger=self.books,
            log_dir=log_dir,
            env_for=env_for,
            on_exit=self._on_exit,
            release_takes=self.board.release_takes,
        )
        self.no_capacity = False
        self.throttled = 0
        self._init_failures = 0
        self._backoff_until = 0.0
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._control())

    # ------------------------------------------------------------ library API
    def submit(self, job_input: Any, policy: dict[str, Any] | None = None, *, sync: bool = False) -> Job:
        """Queue a job as /run does (ConfigError for a policy RunPod would refuse)."""
        job = self.board.submit(job_input, parse_policy(policy, self.config.execution_timeout, self.limits), sync=sync)
        self._wake.set()
        return job

    def retry(self, job: Job) -> bool:
        """/retry: re-queue a FAILED or TIMED_OUT job under its id (False for any other state)."""
        retried = self.board.retry(job)
        self._wake.set()
        return retried

    async def wait_idle(self, timeout: float = 60.0) -> None:  # noqa: ASYNC109
        """Until no job is queued or running on this endpoint."""
        await self._wait(lambda: not self.board.queue and not self.board.in_progress(), timeout, "idle")

    async def wait_workers(self, count: int, timeout: float = 60.0) -> None:  # noqa: ASYNC109
        """Until exactly `count` worker processes are alive (started and not yet exited)."""
        await self._wait(lambda: len(self.pool.alive()) == count, timeout, f"{count} workers alive")

    async def _wait(self, done: Callable[[], bool], seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while not done():
            if time.monotonic() >= deadline:
                raise TimeoutError(f"endpoint {self.id}: not {what} after {seconds} s; health {self.health()}")
            await asyncio.sleep(WAIT_POLL)

    def ledger(self) -> list[LedgerEntry]:
        """One record per worker ever started (see `ledger.LedgerEntry`)."""
        return self.books.entries(time.monotonic())

    def billed_seconds(self, include_initializing: bool | None = None, *, rounded: bool = False) -> float:
        """Total billed worker-seconds (live workers up to now); None: the endpoint's `bill_initializing`."""
        return self.books.billed_seconds(time.monotonic(), include_initializing, rounded=rounded)

    def bill_usd(self, include_initializing: bool | None = None, *, rounded: bool = False) -> float:
        return self.books.bill_usd(time.monotonic(), include_initializing, rounded=rounded)

    def bill(self) -> dict[str, Any]:
        """The ledger as JSON: totals under both readings and one line per worker."""
        now = time.monotonic()
        return {
            "endpoint": self.id,
            "now": now,
            **self.books.summary(now),
            "ledger": [e.as_dict() for e in self.books.entries(now)],
        }

    def worker_logs(self, worker_id: str) -> str:
        worker = self.pool.workers.get(worker_id)
        return "" if worker is None else worker.process.logs()

    def workers(self) -> list[dict[str, Any]]:
        return [
            {
                "id": w.id,
                "pid": w.timeline.pid,
                "status": w.status(),
                "jobs": w.held,
                "draining": w.draining,
                "unhealthy": w.unhealthy,
                "pings": w.ping_count,
            }
            for w in self.pool.workers.values()
        ]

    def update(self, **changes: Any) -> EndpointConfig:
        """Change settings on the running endpoint (workersMin/Max take effect at the next tick)."""
        self.config = self.config.replace(**changes).validate(self.limits)
        self.books.hourly_rate = self.config.gpu_hourly_rate
        self.books.bill_initializing = self.config.bill_initializing
        self._wake.set()
        return self.config

    def set_no_capacity(self, on: bool) -> None:
        """The "no capacity" fault: workers the scaler asks for are throttled instead of started."""
        self.no_capacity = on
        self._wake.set()

    def health(self) -> dict[str, Any]:
        live = [w for w in self.pool.alive() if not w.stopping]
        idle = sum(1 for w in live if w.ready and not w.held)
        running = sum(1 for w in live if w.ready and w.held)
        unhealthy = sum(1 for w in live if w.unhealthy) + (1 if time.monotonic() < self._backoff_until else 0)
        c = self.board.counters
        return {
            "jobs": {
                "completed": c.completed,
                "failed": c.failed,
                "inProgress": len(self.board.in_progress()),
                "inQueue": len(self.board.queue),
                "retried": c.retried,
            },
            "workers": {
                "idle": idle,
                "initializing": sum(1 for w in live if not w.ready),
                "ready": idle + running,
                "running": running,
                "throttled": self.throttled,
                "unhealthy": unhealthy,
            },
        }

    # ------------------------------------------------------------ the worker protocol
    async def take(self, worker_id: str, want: int, jobs_in_progress: bool = False) -> list[Job]:
        worker = self.pool.workers.get(worker_id)
        if worker is None or worker.exited:
            await asyncio.sleep(self.limits.stopping_take_hold)
            return []
        self.pool.mark_ready(worker, time.monotonic())
        if not jobs_in_progress:
            self.board.worker_reports(worker_id, set(), time.monotonic())
        if worker.stopping:
            await asyncio.sleep(self.limits.stopping_take_hold)
            return []
        if worker.draining:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(worker.stop_event.wait(), self.limits.take_hold)
            return []
        jobs = await self.board.take(worker_id, max(1, want), self.limits.take_hold)
        worker.timeline.jobs_taken += len(jobs)
        return jobs

    def complete(self, worker_id: str, job_id: str, result: dict[str, Any]) -> None:
        job = self.board.complete(worker_id, job_id, result, time.monotonic())
        worker = self.pool.workers.get(worker_id)
        if job is not None and job.stop_pod and worker is not None:
            self._drain(worker, "stopPod (refresh_worker)")

    def ping(self, worker_id: str, status: str | None, job_ids: list[str]) -> None:
        """A heartbeat: `job_ids` are the jobs the worker runs (see `JobBoard.worker_reports`)."""
        worker = self.pool.workers.get(worker_id)
        if worker is None:
            return
        worker.ping_count += 1
        worker.last_ping = time.monotonic()
        worker.unhealthy = worker.unhealthy or status == "unhealthy"
        self.board.worker_reports(worker_id, set(job_ids), time.monotonic())

    # ------------------------------------------------------------ control
    def _drain(self, worker: Worker, reason: str) -> None:
        worker.timeline.stop_reason = reason
        if worker.held:
            self.pool.drain(worker)
        else:
            self.pool.stop(worker, reason, self.config.stop_grace)
        self._wake.set()

    def _on_held(self, worker_id: str, count: int, now: float) -> None:
        worker = self.pool.workers.get(worker_id)
        if worker is None:
            return
        self.pool.set_held(worker, count, now)
        if count == 0 and worker.draining:
            self.pool.stop(worker, worker.timeline.stop_reason or "drained", self.config.stop_grace)

    def _on_exit(self, worker: Worker, code: int) -> None:
        now = time.monotonic()
        self.board.release_takes(worker.id)  # its long-polls outlive its connections otherwise
        self.board.requeue_worker(worker.id, f"worker {worker.id} exited (code {code}) while running the job", now)
        if worker.ready:
            self._init_failures = 0
        elif not worker.stopping:
            self._init_failures += 1
            self._backoff_until = now + min(MAX_BACKOFF, 2.0 ** (self._init_failures - 1))
        self._wake.set()

    async def _control(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.limits.tick)
            self._wake.clear()
            self.step(time.monotonic())

    def step(self, now: float) -> None:
        """One pass of the control loop."""
        cfg = self.config
        _, timed_out = self.board.expire(now)
        for job in timed_out:
            worker = self.pool.workers.get(job.worker_id or "")
            if worker is not None:
                self.pool.stop(worker, "execution timeout", cfg.stop_grace)
        active = self.pool.active()
        excess = max(0, len(active) - cfg.workers_max)  # idle ones first, newest first
        for worker in sorted(active, key=lambda w: (w.held > 0, -w.timeline.spawned_at))[:excess]:
            self._drain(worker, "workersMax lowered")
        serving = [w for w in self.pool.active() if not w.draining]
        if not self.board.queue:
            idle = {w.id: w.idle_since for w in serving if w.idle_since is not None}
            for worker_id in idle_to_stop(idle, now, cfg.idle_timeout, len(serving), cfg.workers_min):
                self.pool.stop(self.pool.workers[worker_id], "idle timeout", cfg.stop_grace)
            serving = [w for w in self.pool.active() if not w.draining]
        state = ScaleState(
            scaler_type=cfg.scaler_type,
            scaler_value=cfg.scaler_value,
            workers_min=cfg.workers_min,
            workers_max=cfg.workers_max,
            queued=self.board.queue.normal,
            overdue=self.board.queue.overdue(now, cfg.scaler_value),
            in_progress=len(self.board.in_progress()),
            alive=len(serving),
            initializing=sum(1 for w in serving if not w.ready),
        )
        wanted = min(to_start(state), cfg.workers_max - len(self.pool.active()))
        self.throttled = max(0, wanted) if self.no_capacity else 0
        if wanted <= 0 or self.no_capacity or now < self._backoff_until:
            return
        for _ in range(wanted):
            self.pool.start(cfg)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.pool.close(self.config.stop_grace)
