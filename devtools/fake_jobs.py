"""Jobs, endpoints and fault modes of the local RunPod API.

Each job runs the handler the way the runpod SDK's worker does
(`rp_job.run_job`, or `rp_job.run_job_generator` for generator handlers, with
the same error folding and `return_aggregate_stream` handling as
`rp_job.handle_job`). Per job the record keeps whether the handler completed,
whether it was cancelled and how many seconds a worker ran it (what RunPod
would bill), so a test can prove a cancelled job never also completed.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from runpod.serverless.modules.rp_job import run_job, run_job_generator

FaultMode = Literal["ok", "slow", "throttled", "no_capacity", "worker_lost", "server_error", "drop"]
REQUEST_FAULTS = frozenset({"throttled", "server_error", "drop"})  # refuse the HTTP request itself
JOB_FAULTS = frozenset({"slow", "no_capacity", "worker_lost"})  # accept the job, then misbehave
FINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})
WORKER_LOST_ERROR = "the worker died while running the job (retries spent)"


@dataclass
class Fault:
    """A fault mode; `times` limits how many requests (or jobs) it hits, None: all."""

    mode: FaultMode = "ok"
    times: int | None = None
    slow_seconds: float = 3600.0  # `slow`: the job runs this long before the handler is called
    lost_after: float = 0.1  # `worker_lost`: seconds into the job before the worker dies
    status: int = 503  # `server_error`: the HTTP status answered

    def take(self, kinds: frozenset[str]) -> FaultMode:
        """The mode to apply to one request/job of `kinds`, counting it down."""
        if self.mode not in kinds or self.times == 0:
            return "ok"
        if self.times is not None:
            self.times -= 1
        return self.mode


@dataclass
class Backend:
    """What a worker of the endpoint runs: the config passed to `runpod.serverless.start`."""

    handler: Callable[..., Any]
    return_aggregate_stream: bool = False
    concurrency: int = 64


@dataclass
class JobRecord:
    id: str
    endpoint_id: str
    input: Any
    status: str = "IN_QUEUE"
    output: Any = None
    error: Any = None
    created: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    handler_completed: bool = False  # the handler ran to its end
    completed: bool = False  # the job ended COMPLETED (what the caller is billed and answered for)
    cancelled: bool = False
    stream: list[dict[str, Any]] = field(default_factory=list)
    stream_read: int = 0
    task: asyncio.Task[None] | None = None

    @property
    def billed_seconds(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.monotonic()) - self.started

    def state(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "status": self.status}
        if self.started is not None:
            body["delayTime"] = int((self.started - self.created) * 1000)
            body["executionTime"] = int(self.billed_seconds * 1000)
        if self.status == "COMPLETED" or (self.status == "FAILED" and self.output is not None):
            body["output"] = self.output
        if self.error is not None:
            body["error"] = self.error
        return body


@dataclass
class FakeEndpoint:
    id: str
    backend: Backend
    fault: Fault = field(default_factory=Fault)
    workers_max: int = 3
    semaphore: asyncio.Semaphore | None = None

    def slots(self) -> asyncio.Semaphore:
        if self.semaphore is None:
            self.semaphore = asyncio.Semaphore(max(1, self.backend.concurrency))
        return self.semaphore


class JobStore:
    def __init__(self) -> None:
        self.jobs: dict[str, JobRecord] = {}
        self._ids = itertools.count(1)

    def create(self, endpoint: FakeEndpoint, job_input: Any) -> JobRecord:
        job = JobRecord(id=f"job-{next(self._ids):05d}-{endpoint.id}", endpoint_id=endpoint.id, input=job_input)
        self.jobs[job.id] = job
        job.task = asyncio.get_running_loop().create_task(self._execute(endpoint, job, endpoint.fault.take(JOB_FAULTS)))
        return job

    def of(self, endpoint_id: str) -> list[JobRecord]:
        return [job for job in self.jobs.values() if job.endpoint_id == endpoint_id]

    async def wait(self, job: JobRecord, seconds: float) -> None:
        if job.task is not None and not job.task.done():
            await asyncio.wait({job.task}, timeout=seconds)

    def cancel(self, job: JobRecord) -> None:
        if job.status in FINAL:
            return
        job.cancelled = True
        job.status = "CANCELLED"
        if job.started is not None:
            job.finished = time.monotonic()
        if job.task is not None:
            job.task.cancel()

    async def _execute(self, endpoint: FakeEndpoint, job: JobRecord, fault: FaultMode) -> None:
        try:
            while fault == "no_capacity" or endpoint.workers_max == 0:  # nobody takes the job
                await asyncio.sleep(0.05)
                if fault != "no_capacity" and endpoint.workers_max > 0:
                    break
            async with endpoint.slots():
                job.status, job.started = "IN_PROGRESS", time.monotonic()
                if fault == "slow":
                    await asyncio.sleep(endpoint.fault.slow_seconds)
                if fault == "worker_lost":
                    runner = asyncio.ensure_future(self._run_handler(endpoint.backend, job))
                    await asyncio.sleep(endpoint.fault.lost_after)
                    runner.cancel()
                    job.status, job.error, job.finished = "FAILED", WORKER_LOST_ERROR, time.monotonic()
                    return
                result = await self._run_handler(endpoint.backend, job)
                job.handler_completed = True
                if job.cancelled:  # cancelled while the handler finished: never answered nor billed further
                    return
                job.finished = time.monotonic()
                job.output = result.get("output")
                if result.get("error"):
                    job.status, job.error = "FAILED", result["error"]
                else:
                    job.status, job.completed = "COMPLETED", True
        except asyncio.CancelledError:
            job.cancelled = True
            job.status = "CANCELLED"
            if job.started is not None and job.finished is None:
                job.finished = time.monotonic()

    async def _run_handler(self, backend: Backend, job: JobRecord) -> dict[str, Any]:
        payload = {"id": job.id, "input": job.input}
        handler = backend.handler
        if not (inspect.isasyncgenfunction(handler) or inspect.isgeneratorfunction(handler)):
            finished: dict[str, Any] = await run_job(handler, payload)
            return finished
        result: dict[str, Any] = {"output": []}
        async for piece in run_job_generator(handler, payload):
            if isinstance(piece.get("output"), dict) and piece["output"].get("error"):
                return {"error": str(piece["output"]["error"])}
            if piece.get("error"):
                return {"error": piece["error"]}
            if backend.return_aggregate_stream:
                result["output"].append(piece["output"])
            job.stream.append({"output": piece["output"]})
        return result
