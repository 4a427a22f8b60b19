"""The runpod SDK's job loop without its polling sleeps: `install()` before `runpod.serverless.start`.

runpod 1.12's `rp_scale.JobScaler` loses most of a burst's time on a fast engine:

- its occupancy counts a job twice while it waits in the local queue (the queue's
  size plus `JobsProgress`, to which the fetch loop adds each job as it queues it),
  so a worker whose slots are half taken already looks full;
- when it looks full, `get_jobs` sleeps 1 s before asking again, even if a slot
  frees a millisecond later (and `set_scale` waits for an empty worker in 1 s steps);
- `run_jobs` looks at its queue every 0.1 s: a job fetched while it waits starts late.

`PromptJobScaler` keeps the SDK's loop (its fetcher, handler, stop channel,
shutdown, the `concurrency_modifier` contract: asked before each fetch, 0 takes no
job, a new value resizes the queue once the worker is empty) and changes only that:
a job counts once (`JobsProgress` holds each job from the moment it is queued until
it ends), the fetch loop waits for a slot to free (an event set when a job ends)
instead of sleeping 1 s, still asking the modifier again at least once a second as
the SDK does, and the run loop wakes as soon as a job is queued.

The class is set as `rp_scale.JobScaler`, the name `runpod.serverless.worker.run_worker`
calls. `install()` checks first that the SDK still has what this relies on and refuses
to start, naming what is missing, when it does not. ``SDK_LOOP=sdk`` in the environment
leaves the SDK's own loop (for comparisons: bench.platform_bench, tests/test_sdk_loop.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
from collections.abc import Mapping
from typing import Any

SDK_LOOP_ENV = "SDK_LOOP"
LOOPS = ("prompt", "sdk")
TESTED_RUNPOD = "1.12.0"  # the version this was written against (requirements.txt pins it)
# what PromptJobScaler calls or replaces on the SDK's JobScaler
REQUIRED_METHODS = ("set_scale", "get_jobs", "run_jobs", "handle_job", "current_occupancy", "kill_worker",
                    "is_alive", "start", "run")  # fmt: skip
# what the SDK's JobScaler.__init__ sets and this reads
REQUIRED_ATTRIBUTES = ("_shutdown_event", "current_concurrency", "job_progress", "jobs_queue", "jobs_tasks",
                       "concurrency_modifier", "jobs_fetcher", "jobs_fetcher_timeout", "config")  # fmt: skip
FULL_RECHECK_S = 1.0  # the SDK asks the modifier again after 1 s when full: so does this, unless a slot frees sooner
IDLE_RECHECK_S = 0.1  # the run loop's safety net (it wakes on each queued job)


class SdkLoopError(RuntimeError):
    """The installed runpod SDK is not the one PromptJobScaler was written for."""


def _sdk_problems(rp_scale: Any, worker: Any) -> list[str]:
    problems = []
    base = getattr(rp_scale, "JobScaler", None)
    if base is None:
        return ["runpod.serverless.modules.rp_scale has no JobScaler"]
    for name in REQUIRED_METHODS:
        if not callable(getattr(base, name, None)):
            problems.append(f"JobScaler.{name} is gone")
    for name, params in (("get_jobs", ["self", "session"]), ("run_jobs", ["self", "session"]),
                         ("handle_job", ["self", "session", "job"])):  # fmt: skip
        method = getattr(base, name, None)
        if callable(method) and list(inspect.signature(method).parameters) != params:
            problems.append(f"JobScaler.{name} takes {list(inspect.signature(method).parameters)}, not {params}")
    try:
        init_source = inspect.getsource(base.__init__)
        run_worker_source = inspect.getsource(worker.run_worker)
    except (OSError, TypeError, AttributeError) as exc:
        return [*problems, f"cannot read the SDK's source: {exc}"]
    for name in REQUIRED_ATTRIBUTES:
        if not re.search(rf"self\.{name}\s*(:[^=\n]*)?=", init_source):
            problems.append(f"JobScaler.__init__ no longer sets self.{name}")
    if "rp_scale.JobScaler(" not in run_worker_source:
        problems.append("runpod.serverless.worker.run_worker no longer builds rp_scale.JobScaler")
    return problems


def check_sdk() -> None:
    """Raise SdkLoopError naming each thing PromptJobScaler relies on that the installed SDK lacks."""
    import runpod
    from runpod.serverless import worker
    from runpod.serverless.modules import rp_scale

    problems = _sdk_problems(rp_scale, worker)
    if problems:
        version = getattr(runpod, "__version__", "?")
        raise SdkLoopError(
            f"runpod {version}'s job loop is not the one handler.sdk_loop was written for (runpod {TESTED_RUNPOD}): "
            + "; ".join(problems)
            + f". Update handler/sdk_loop.py, or set {SDK_LOOP_ENV}=sdk to run the SDK's own loop."
        )


def loop_choice(env: Mapping[str, str]) -> str:
    choice = env.get(SDK_LOOP_ENV, "prompt").strip().lower() or "prompt"
    if choice not in LOOPS:
        raise SdkLoopError(f"{SDK_LOOP_ENV}={choice!r}: expected one of {', '.join(LOOPS)}")
    return choice


def install(env: Mapping[str, str]) -> str:
    """Make `runpod.serverless.start` run PromptJobScaler (unless SDK_LOOP=sdk); the loop chosen."""
    choice = loop_choice(env)
    if choice == "sdk":
        return choice
    from runpod.serverless.modules import rp_scale

    if getattr(rp_scale.JobScaler, "prompt_loop", False):  # installed already
        return choice
    check_sdk()
    rp_scale.JobScaler = prompt_job_scaler()
    return choice


_PROMPT: dict[str, type] = {}


def prompt_job_scaler() -> type:
    """The PromptJobScaler class (built once, on the SDK's JobScaler as found at the first call)."""
    if "class" in _PROMPT:
        return _PROMPT["class"]
    from runpod.serverless.modules import rp_scale
    from runpod.serverless.modules.rp_scale import TooManyRequests, log

    base: Any = rp_scale.JobScaler

    class PromptJobScaler(base):  # type: ignore[misc]
        """runpod's JobScaler that counts each job once and waits on events, not sleeps."""

        prompt_loop = True
        current_concurrency: int  # set by the SDK's __init__
        jobs_queue: asyncio.Queue[dict[str, Any]]

        def __init__(self, config: dict[str, Any]) -> None:
            super().__init__(config)
            self._slot_freed = asyncio.Event()  # a job ended (or the worker is stopping)
            self._job_queued = asyncio.Event()  # a job was queued (or the worker is stopping)

        def current_occupancy(self) -> int:
            # get_jobs adds each job to JobsProgress as it queues it; handle_job removes it at its end:
            # JobsProgress alone counts every job taken, queued or running, once
            return int(self.job_progress.get_job_count())

        def kill_worker(self) -> None:
            super().kill_worker()
            self._slot_freed.set()
            self._job_queued.set()

        async def _wait_slot(self, seconds: float) -> None:
            if not self.is_alive():  # stopping: kill_worker's wake-up is not to be cleared
                return
            self._slot_freed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._slot_freed.wait(), timeout=seconds)

        async def set_scale(self) -> None:
            self.current_concurrency = self.concurrency_modifier(self.current_concurrency)
            if self.current_concurrency == self.jobs_queue.maxsize:
                return
            while self.current_occupancy() > 0:  # not safe to resize with jobs in flight (as the SDK)
                if not self.is_alive():
                    return
                await self._wait_slot(FULL_RECHECK_S)
            self.jobs_queue = asyncio.Queue(maxsize=self.current_concurrency)
            log.debug(f"PromptJobScaler.set_scale | New concurrency set to: {self.current_concurrency}")

        async def get_jobs(self, session: Any) -> None:
            while self.is_alive():
                await self.set_scale()
                if not self.is_alive():  # stopped while it waited to resize: take no more jobs
                    break
                jobs_needed = self.current_concurrency - self.current_occupancy()
                if jobs_needed <= 0:
                    # full (or concurrency 0): wait for a slot, asking the modifier again within 1 s as the SDK does
                    await self._wait_slot(FULL_RECHECK_S)
                    continue
                try:
                    acquired_jobs = await asyncio.wait_for(
                        self.jobs_fetcher(session, jobs_needed), timeout=self.jobs_fetcher_timeout
                    )
                    if not acquired_jobs:
                        continue
                    for job in acquired_jobs:
                        self.job_progress.add(job)  # counted from now on, once
                        await self.jobs_queue.put(job)
                        self._job_queued.set()
                    log.info(f"Jobs in queue: {self.jobs_queue.qsize()}")
                except TooManyRequests:
                    await asyncio.sleep(5)  # the SDK's debounce
                except asyncio.CancelledError:
                    raise
                except TimeoutError:
                    log.debug("PromptJobScaler.get_jobs | Job acquisition timed out. Retrying.")
                except TypeError as error:
                    log.debug(f"PromptJobScaler.get_jobs | Unexpected error: {error}.")
                except Exception as error:  # noqa: BLE001 - as the SDK: a failed fetch is logged, then retried
                    log.error(f"Failed to get job. | Error Type: {type(error).__name__} | Error Message: {error}")
                finally:
                    await asyncio.sleep(0)

        async def run_jobs(self, session: Any) -> None:
            tasks: set[asyncio.Task[Any]] = set()
            while self.is_alive() or not self.jobs_queue.empty():
                while len(tasks) < self.current_concurrency and not self.jobs_queue.empty():
                    job = self.jobs_queue.get_nowait()
                    task = asyncio.create_task(self.handle_job(session, job))
                    tasks.add(task)
                    self.jobs_tasks[job["id"]] = task
                self._job_queued.clear()  # no await since the queue was read: a later put sets it again
                queued = asyncio.ensure_future(self._job_queued.wait())
                try:
                    done, _ = await asyncio.wait({*tasks, queued}, return_when=asyncio.FIRST_COMPLETED,
                                                 timeout=IDLE_RECHECK_S if not tasks else FULL_RECHECK_S)  # fmt: skip
                finally:
                    queued.cancel()
                tasks.difference_update(done)
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for result in results:
                if isinstance(result, Exception) and not isinstance(result, asyncio.CancelledError):
                    log.error(f"PromptJobScaler.run_jobs | Task failed during shutdown drain: {result}")

        async def handle_job(self, session: Any, job: dict[str, Any]) -> None:
            try:
                await super().handle_job(session, job)
            finally:
                self._slot_freed.set()

    _PROMPT["class"] = PromptJobScaler
    return PromptJobScaler
