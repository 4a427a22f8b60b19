"""The job board of one endpoint: jobs, the queue, and the worker side of the job protocol.

Workers long-poll for jobs (`take`): a take finds queued jobs at once, or
waits until a job is submitted (it is handed over the moment it arrives) or
the hold time passes (the route answers 204). Jobs a worker took are held by
it until its result (`complete`), a cancel, a timeout, ttl expiry, or its
death (`requeue_worker`: back to the queue, `retries` + 1, or FAILED after the
endpoint's `max_job_retries`). Stops travel on the SDK's stop channel
(`signal_stop` / `wait_stop_signals`).

A job stopped while a worker ran it (cancel, timeout, ttl) may still run
there: the SDK drops a stop that arrives before the job's task exists. Such a
job lingers on its worker (counted busy, its stop repeated on each heartbeat
that still lists it) until the worker shows it is gone: a heartbeat without
it, a job-take with `job_in_progress=0`, or the worker's exit.

`on_held(worker_id, count, now)` is called whenever the number of jobs a
worker holds (lingering ones included) changes: the ledger's idle/running
states come from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devtools.platform.config import Limits
from devtools.platform.jobs import Job, JobQueue, Policy, new_job_id

HeldHook = Callable[[str, int, float], None]


@dataclass(eq=False)
class _Taker:
    worker_id: str
    want: int
    future: asyncio.Future[list[Job]]


@dataclass
class Counters:
    completed: int = 0
    failed: int = 0  # FAILED and TIMED_OUT
    timed_out: int = 0
    cancelled: int = 0
    retried: int = 0


@dataclass
class JobBoard:
    endpoint_id: str
    limits: Limits
    on_held: HeldHook
    max_job_retries: Callable[[], int] = lambda: 3
    jobs: dict[str, Job] = field(default_factory=dict)
    queue: JobQueue = field(default_factory=JobQueue)
    held: dict[str, set[str]] = field(default_factory=dict)
    lingering: dict[str, set[str]] = field(default_factory=dict)
    counters: Counters = field(default_factory=Counters)
    _takers: deque[_Taker] = field(default_factory=deque)
    _stops: dict[str, list[str]] = field(default_factory=dict)
    _stop_waiters: dict[str, asyncio.Future[None]] = field(default_factory=dict)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    # ------------------------------------------------------------ change notification
    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_change(self, seconds: float) -> None:
        """Until any job changes state (or `seconds` pass)."""
        event = self._changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)

    async def wait_final(self, job: Job, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not job.final and job.id in self.jobs and (left := deadline - time.monotonic()) > 0:
            await self.wait_change(left)

    # ------------------------------------------------------------ client side
    def submit(self, job_input: Any, policy: Policy, *, sync: bool = False, webhook: str | None = None) -> Job:
        job = Job(new_job_id(self.endpoint_id), self.endpoint_id, job_input, policy, sync=sync, webhook=webhook)
        self.jobs[job.id] = job
        self.queue.push(job)
        self._dispatch()
        self._notify()
        return job

    def in_progress(self) -> list[Job]:
        return [self.jobs[j] for ids in self.held.values() for j in ids if j in self.jobs]

    def cancel(self, job: Job, now: float) -> None:
        if job.final:
            return
        self._release(job, now)
        job.finish("CANCELLED", now, self._retention(job))
        self.counters.cancelled += 1
        self._notify()

    def retry(self, job: Job) -> bool:
        """Re-queue a FAILED or TIMED_OUT job under the same id (False: not in such a state)."""
        if job.status not in ("FAILED", "TIMED_OUT"):
            return False
        job.status, job.output, job.has_output, job.error = "IN_QUEUE", None, False, None
        job.finished_at = job.retain_until = job.taken_at = job.worker_id = None
        self.queue.push(job)
        self._dispatch()
        self._notify()
        return True

    def purge(self, now: float) -> int:
        """Cancel every queued job (running ones are left alone); how many."""
        purged = self.queue.clear()
        for job in purged:
            job.finish("CANCELLED", now, self._retention(job))
            self.counters.cancelled += 1
        self._notify()
        return len(purged)

    def _retention(self, job: Job) -> float:
        return self.limits.retention_runsync if job.sync else self.limits.retention_run

    # ------------------------------------------------------------ worker side
    async def take(self, worker_id: str, want: int, hold: float) -> list[Job]:
        """Up to `want` jobs for the worker: at once if queued, else the first to arrive within `hold` s."""
        jobs = self._pop(worker_id, want) if self.queue else []
        if jobs or hold <= 0:
            return jobs
        taker = _Taker(worker_id, want, asyncio.get_running_loop().create_future())
        self._takers.append(taker)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(taker.future), hold)
        except asyncio.CancelledError:  # the request died (platform stopping): jobs handed to it go back
            if taker.future.done() and not taker.future.cancelled():
                self._give_back(worker_id, taker.future.result())
            taker.future.cancel()
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._takers.remove(taker)
        if taker.future.done():  # jobs, or [] when released; possibly in the same instant as the timeout
            return taker.future.result()
        taker.future.cancel()
        return []

    def _give_back(self, worker_id: str, jobs: list[Job]) -> None:
        held = self.held.get(worker_id, set())
        for job in reversed(jobs):
            held.discard(job.id)
            job.status, job.worker_id, job.taken_at = "IN_QUEUE", None, None
            job.attempts -= 1
            self.queue.push(job, front=True)
        self._held_changed(worker_id, time.monotonic())

    def release_takes(self, worker_id: str) -> None:
        """Answer the worker's pending long-polls now (it is stopping)."""
        for taker in self._takers:
            if taker.worker_id == worker_id and not taker.future.done():
                taker.future.set_result([])
        waiter = self._stop_waiters.get(worker_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _pop(self, worker_id: str, want: int) -> list[Job]:
        now = time.monotonic()
        jobs: list[Job] = []
        while len(jobs) < want and (job := self.queue.pop()) is not None:
            job.status, job.taken_at, job.worker_id = "IN_PROGRESS", now, worker_id
            job.attempts += 1
            jobs.append(job)
        if jobs:
            self.held.setdefault(worker_id, set()).update(j.id for j in jobs)
            self._held_changed(worker_id, now)
            self._notify()
        return jobs

    def _dispatch(self) -> None:
        while self.queue and self._takers:
            taker = self._takers.popleft()
            if not taker.future.done():
                taker.future.set_result(self._pop(taker.worker_id, taker.want))

    def complete(self, worker_id: str, job_id: str, result: dict[str, Any], now: float) -> Job | None:
        """A worker's job-done. Late results (job cancelled, timed out, expired, re-queued) are ignored."""
        job = self.jobs.get(job_id)
        if job is None or job.final or job.worker_id != worker_id or job.status != "IN_PROGRESS":
            return None
        self._release(job, now, stop=False)
        if "output" in result:
            job.output, job.has_output = result["output"], True
        job.stop_pod = bool(result.get("stopPod"))
        if result.get("error") is not None:
            job.error = result["error"]
            job.finish("FAILED", now, self._retention(job))
            self.counters.failed += 1
        else:
            job.finish("COMPLETED", now, self._retention(job))
            self.counters.completed += 1
        self._notify()
        return job

    def add_stream(self, worker_id: str, job_id: str, piece: dict[str, Any]) -> None:
        job = self.jobs.get(job_id)
        if job is not None and job.status == "IN_PROGRESS" and job.worker_id == worker_id and "output" in piece:
            job.stream.append(piece["output"])
            self._notify()

    def _release(self, job: Job, now: float, *, stop: bool = True) -> None:
        """The job's worker no longer holds it (with `stop`, it is told to stop running it)."""
        if job.status == "IN_QUEUE":
            self.queue.remove(job)
            return
        if job.worker_id is None or job.status != "IN_PROGRESS":
            return
        held = self.held.get(job.worker_id, set())
        if job.id in held:
            held.discard(job.id)
            if stop:
                self.lingering.setdefault(job.worker_id, set()).add(job.id)
                self.signal_stop(job.worker_id, job.id)
            self._held_changed(job.worker_id, now)

    def _held_changed(self, worker_id: str, now: float) -> None:
        self.on_held(worker_id, len(self.held.get(worker_id, ())) + len(self.lingering.get(worker_id, ())), now)

    def worker_reports(self, worker_id: str, running: set[str] | None, now: float) -> None:
        """What the worker says it runs (a heartbeat's ids; an empty set: job_in_progress=0).

        Lingering jobs it no longer runs are let go; those it still runs are told to stop again.
        """
        lingering = self.lingering.get(worker_id)
        if running is None or not lingering:
            return
        gone = lingering - running
        lingering -= gone
        for job_id in lingering:
            self.signal_stop(worker_id, job_id)
        if gone:
            self._held_changed(worker_id, now)

    def requeue_worker(self, worker_id: str, reason: str, now: float) -> list[Job]:
        """The worker is gone: its jobs go back to the queue, or fail past the retry bound."""
        ids = self.held.pop(worker_id, set())
        self.lingering.pop(worker_id, None)
        self._stops.pop(worker_id, None)
        requeued = []
        for job_id in ids:
            job = self.jobs.get(job_id)
            if job is None or job.final:
                continue
            if job.retries >= self.max_job_retries():
                job.error = f"{reason}; the job was retried {job.retries} times and is not retried again"
                job.finish("FAILED", now, self._retention(job))
                self.counters.failed += 1
                continue
            job.status, job.worker_id, job.taken_at = "IN_QUEUE", None, None
            job.retries += 1
            self.counters.retried += 1
            self.queue.push(job, front=True)
            requeued.append(job)
        self._dispatch()
        self._notify()
        return requeued

    # ------------------------------------------------------------ stop channel
    def signal_stop(self, worker_id: str, job_id: str) -> None:
        self._stops.setdefault(worker_id, []).append(job_id)
        waiter = self._stop_waiters.get(worker_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait_stop_signals(self, worker_id: str, hold: float) -> list[str]:
        if not self._stops.get(worker_id):
            waiter = asyncio.get_running_loop().create_future()
            self._stop_waiters[worker_id] = waiter
            try:
                await asyncio.wait_for(waiter, hold)
            except TimeoutError:
                pass
            finally:
                if self._stop_waiters.get(worker_id) is waiter:
                    del self._stop_waiters[worker_id]
        return self._stops.pop(worker_id, [])

    # ------------------------------------------------------------ timers
    def expire(self, now: float) -> tuple[list[Job], list[Job]]:
        """Drop jobs past their ttl or their result retention; time out jobs past their execution timeout.

        Returns (deleted, timed_out); the caller stops the workers of timed-out jobs.
        """
        deleted: list[Job] = []
        timed_out: list[Job] = []
        for job in list(self.jobs.values()):
            if now >= job.expires_at or (job.retain_until is not None and now >= job.retain_until):
                self._release(job, now)
                del self.jobs[job.id]
                deleted.append(job)
            elif (deadline := job.deadline) is not None and now >= deadline:
                self._release(job, now)
                job.error = f"job exceeded its execution timeout of {job.policy.execution_timeout * 1000:.0f} ms"
                job.finish("TIMED_OUT", now, self._retention(job))
                self.counters.failed += 1
                self.counters.timed_out += 1
                timed_out.append(job)
        if deleted or timed_out:
            self._notify()
        return deleted, timed_out

    def next_deadline(self) -> float | None:
        times = [t for job in self.in_progress() if (t := job.deadline) is not None]
        return min(times) if times else None
