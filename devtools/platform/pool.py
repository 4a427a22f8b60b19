"""The workers of one endpoint: start (container-start delay, then the process), stop, exit.

Each worker has a lifecycle task: wait out the container-start delay (a stop
during it ends the worker without a process), spawn the process, wait for it to
exit, then report the exit (`on_exit`), which re-queues the jobs it held. The
ledger's timeline of the worker opens when `start` is called and closes when
the process has exited.

Stopping (`stop`): the worker takes no more jobs, its pending long-polls are
answered (so the SDK's loop sees the SIGTERM promptly), SIGTERM is sent, and
SIGKILL follows after the endpoint's `stop_grace`. `drain` only stops new jobs
from reaching a worker; the endpoint stops it once it holds none (stopPod, a
lowered workersMax).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from devtools.platform.config import EndpointConfig
from devtools.platform.ledger import Ledger, WorkerTimeline
from devtools.platform.process import SPAWN_FAILED, WorkerProcess

EnvBuilder = Callable[[str, EndpointConfig], dict[str, str]]
ExitHook = Callable[["Worker", int], None]


@dataclass(eq=False)
class Worker:
    id: str
    timeline: WorkerTimeline
    process: WorkerProcess
    stopping: bool = False
    draining: bool = False
    unhealthy: bool = False
    ping_count: int = 0
    last_ping: float | None = None
    held: int = 0
    idle_since: float | None = None  # set while ready and holding no job
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @property
    def exited(self) -> bool:
        return self.timeline.exited_at is not None

    @property
    def ready(self) -> bool:
        return self.timeline.ready_at is not None

    @property
    def accepts_jobs(self) -> bool:
        return not (self.stopping or self.draining or self.exited)

    def status(self) -> str:
        """initializing | idle | running | stopping | exited"""
        if self.exited:
            return "exited"
        if self.stopping:
            return "stopping"
        return self.timeline.state


class WorkerPool:
    def __init__(
        self,
        endpoint_id: str,
        *,
        ledger: Ledger,
        log_dir: Path,
        env_for: EnvBuilder,
        on_exit: ExitHook,
        release_takes: Callable[[str], None],
    ) -> None:
        self.endpoint_id = endpoint_id
        self.ledger = ledger
        self.log_dir = log_dir
        self.env_for = env_for
        self.on_exit = on_exit
        self.release_takes = release_takes
        self.workers: dict[str, Worker] = {}
        self._seq = itertools.count(1)

    def alive(self) -> list[Worker]:
        return [w for w in self.workers.values() if not w.exited]

    def active(self) -> list[Worker]:
        """Alive and not stopping: what counts against workersMax and for scaling."""
        return [w for w in self.workers.values() if not w.exited and not w.stopping]

    def start(self, config: EndpointConfig) -> Worker:
        worker_id = f"{self.endpoint_id}-w{next(self._seq):03d}"
        timeline = self.ledger.open(worker_id, time.monotonic(), time.time())
        log_path = self.log_dir / f"{worker_id}.log"
        process = WorkerProcess(list(config.worker_command), self.env_for(worker_id, config), config.cwd, log_path)
        worker = Worker(worker_id, timeline, process)
        self.workers[worker_id] = worker
        worker.task = asyncio.get_running_loop().create_task(self._lifecycle(worker, config))
        return worker

    async def _lifecycle(self, worker: Worker, config: EndpointConfig) -> None:
        code = SPAWN_FAILED
        try:
            if config.container_start_delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(worker.stop_event.wait(), config.container_start_delay)
            if worker.stop_event.is_set():
                code = 0
                return
            pid = await worker.process.spawn()
            if pid is None:
                return
            worker.timeline.pid, worker.timeline.process_started_at = pid, time.monotonic()
            if worker.stop_event.is_set():  # stopped while spawning
                worker.process.stop(config.stop_grace)
            code = await worker.process.wait()
        finally:
            worker.process.kill()
            worker.timeline.close(time.monotonic(), code)
            worker.idle_since = None
            self.on_exit(worker, code)

    def mark_ready(self, worker: Worker, now: float) -> None:
        if worker.timeline.ready_at is None:
            worker.timeline.ready_at = now
            worker.timeline.enter("running" if worker.held else "idle", now)
            worker.idle_since = None if worker.held else now

    def set_held(self, worker: Worker, count: int, now: float) -> None:
        worker.held = count
        if not worker.ready:
            return
        worker.timeline.enter("running" if count else "idle", now)
        worker.idle_since = None if count else now

    def stop(self, worker: Worker, reason: str, grace: float) -> None:
        if worker.exited or worker.stopping:
            return
        worker.stopping = True
        worker.timeline.stop_requested_at = time.monotonic()
        worker.timeline.stop_reason = reason
        worker.stop_event.set()
        worker.process.stop(grace)
        self.release_takes(worker.id)

    def drain(self, worker: Worker) -> None:
        worker.draining = True
        self.release_takes(worker.id)

    async def close(self, grace: float) -> None:
        """Stop every worker and wait until all have exited."""
        for worker in self.alive():
            self.stop(worker, "platform shutdown", grace)
        tasks = [w.task for w in self.workers.values() if w.task is not None and not w.task.done()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
