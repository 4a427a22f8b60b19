"""The runpod-facing application: handler functions around one Worker.

`create_app(settings)` resolves the model at once (a missing model fails the
worker at start-up, not at the first job) but starts nothing else: the store
connects on the first job and the engine on the first cache miss.

Inside the SDK's event loop (its first `concurrency_modifier` call, or the first
job) the app starts its heartbeat, which settles the worker's overhead into the
budget every BUDGET_HEARTBEAT_SECONDS, and takes over SIGTERM (RunPod's
scale-down): stop taking jobs, let the jobs in flight finish (up to
DRAIN_SECONDS), stop the engine, settle the last overhead and pending replays,
drop the worker's reservation, exit.

Past the limit (the heartbeat finds that the worker's own idle tail no longer fits
under the budget) the worker stops for the budget: with scale-to-zero
(handler.endpoint_control) it takes no more jobs, scales its endpoint to zero and
exits once its jobs end; without, it refuses the jobs queued for it at once and
exits one heartbeat after the last.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from typing import Any

import orjson

from handler.billing import Meter
from handler.budget import Budget, BudgetState
from handler.cache import ResponseCache
from handler.endpoint_control import fleet_margin_usd, read_figures, scale_to_zero_hook
from handler.engine import EngineManager
from handler.engine_command import answer_fingerprint
from handler.engine_protocol import Engine
from handler.errors import BudgetExceeded, InternalError, WorkerError
from handler.model import resolve_model
from handler.rates import hourly_rate
from handler.settings import Settings
from handler.store import open_store
from handler.store.base import Store
from handler.store.safety import check_budget_keys_safe
from handler.worker import Worker

log = logging.getLogger(__name__)

STOP_HEARTBEAT_S = 10.0  # the last heartbeat (one Redis call) at most this long
SCALE_DOWN_S = 20.0  # past the limit: the scale-to-zero call at most this long before the worker exits
DRAIN_SECONDS = 7.0  # SIGTERM: jobs in flight may finish; then stop and settle inside a 10 s grace (Docker's)


def process_age_seconds() -> float:
    """Seconds since this process started (Linux /proc); 0 where unknown."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat, open("/proc/uptime", encoding="ascii") as uptime:
            started_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
            up = float(uptime.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return max(0.0, up - started_ticks / os.sysconf("SC_CLK_TCK"))


def internal_error(job: Mapping[str, Any], exc: Exception) -> InternalError:
    """Log an unexpected failure with its traceback under a fresh id; the caller gets the id."""
    error_id = uuid.uuid4().hex[:12]
    log.error("internal error %s in job %s", error_id, job.get("id"), exc_info=exc)
    return InternalError(f"the worker failed unexpectedly ({type(exc).__name__}); see its log: {error_id}",
                         error_id=error_id)  # fmt: skip


def error_output(exc: WorkerError) -> dict[str, Any]:
    """A job-level error. A JSON string, because runpod's streaming path turns errors into strings."""
    return {"error": orjson.dumps(exc.to_dict()).decode()}


class App:
    def __init__(
        self,
        settings: Settings,
        env: Mapping[str, str] | None = None,
        *,
        engine: Engine | None = None,
        store: Store | None = None,
        handle_sigterm: bool = False,
    ) -> None:
        self.settings = settings
        self._given_store = store  # a store to use instead of opening REDIS_URL's (tests)
        self.handle_sigterm = handle_sigterm  # the worker process's own app (python -m handler) only
        self.sdk_config: dict[str, Any] | None = None  # the dict given to runpod.serverless.start
        self.model = resolve_model(settings.model)
        # `engine`: an engine already serving this model (tests share one across apps)
        self._owns_engine = engine is None
        self.engine: Engine = engine or EngineManager(settings.engine, self.model, env=env)
        boot = settings.worker_boot_seconds + process_age_seconds() if settings.bill_initializing else 0.0
        self.meter = Meter(settings.seconds_per_token, clock=time.monotonic, boot_seconds=boot)
        self.rate = hourly_rate(settings.budget)
        self.fingerprint = answer_fingerprint(settings.engine, self.model, self.engine.device)
        self._on_exhausted = scale_to_zero_hook(settings)
        self._worker: Worker | None = None
        self._store: Store | None = None
        self._lock: asyncio.Lock | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._early: asyncio.Task[None] | None = None  # ENGINE_START=boot|background
        self._jobs_running = 0
        self._no_jobs = asyncio.Event()
        self._no_jobs.set()
        self._stopping = asyncio.Event()
        self._idle_timeout = settings.endpoint_idle_timeout  # the endpoint's, once read with the API key
        self._workers_max = settings.endpoint_workers_max
        self._endpoint_read: asyncio.Task[None] | None = None
        self.draining = False
        self.refusing = False  # past the limit without scale-to-zero: queued jobs are refused at once
        self._refused_one = asyncio.Event()
        self.over_budget = asyncio.Event()  # set when the worker stopped for the budget
        self._retired = False

    async def worker(self) -> Worker:
        if self._worker is None:
            self._lock = self._lock or asyncio.Lock()
            async with self._lock:
                if self._worker is None:
                    self._store = self._given_store or await open_store(self.settings.redis_url)
                    if self.settings.daily_budget_usd > 0:  # an evicting Redis would erase the day's spend
                        await check_budget_keys_safe(self._store)
                    self._worker = Worker(
                        self.settings.jobs,
                        self.engine,
                        self.model,
                        cache=ResponseCache(self._store, self.settings.cache, self.fingerprint),
                        budget=Budget(
                            self._store,
                            self.settings.budget,
                            holder=self.settings.runpod_pod_id or None,
                            margin_usd=self._fleet_margin_usd(),
                        ),
                        meter=self.meter,
                        hourly_rate=self.rate,
                    )
        return self._worker

    def _fleet_margin_usd(self) -> float:
        return fleet_margin_usd(self.settings, workers_max=self._workers_max, idle_timeout=self._idle_timeout,
                                rate=self.rate)  # fmt: skip

    async def _read_endpoint(self) -> None:
        """With an API key: the endpoint's own idle timeout and workers max replace
        ENDPOINT_IDLE_TIMEOUT and ENDPOINT_WORKERS_MAX for the tail and the margin."""
        figures = await read_figures(self.settings)
        if figures is None:
            return
        if figures.idle_timeout is not None and figures.idle_timeout != self._idle_timeout:
            log.warning("the endpoint's idle timeout is %g s, not ENDPOINT_IDLE_TIMEOUT=%g: the budget uses %g s",
                        figures.idle_timeout, self._idle_timeout, figures.idle_timeout)  # fmt: skip
            self._idle_timeout = figures.idle_timeout
        if figures.workers_max is not None and figures.workers_max != self._workers_max:
            log.warning("the endpoint's workers max is %d, not ENDPOINT_WORKERS_MAX=%d: the budget uses %d",
                        figures.workers_max, self._workers_max, figures.workers_max)  # fmt: skip
            self._workers_max = figures.workers_max
        worker = await self.worker()
        worker.settings = replace(worker.settings, endpoint_idle_timeout=self._idle_timeout)
        worker.budget.set_margin(self._fleet_margin_usd())

    def _failed(self, exc: WorkerError) -> dict[str, Any]:
        out = error_output(exc)
        if self.engine.needs_refresh:
            log.error("engine failed to start %d times in a row: asking RunPod to replace this worker",
                      self.engine.start_failures)  # fmt: skip
            out["refresh_worker"] = True  # the SDK's plain-handler path reads it from the output
            if self.sdk_config is not None:
                # its generator path never does: it reads only the config it was started with,
                # after the job, and then sends stopPod and leaves its loop
                self.sdk_config["refresh_worker"] = True
        return out

    async def handler(self, job: dict[str, Any]) -> dict[str, Any]:
        """Plain handler: the whole answer (local testing, /runsync of --rp_serve_api)."""
        self.start_background()
        if self.refusing:
            return self._refused()
        worker = await self.worker()
        self._job_begins()
        try:
            return await worker.answer(str(job.get("id", "local")), job.get("input"))
        except WorkerError as exc:
            return self._failed(exc)
        except Exception as exc:  # noqa: BLE001 (logged with its traceback; the caller gets an id, the worker serves on)
            return self._failed(internal_error(job, exc))
        finally:
            self._job_ends()

    async def generator_handler(self, job: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Streaming handler (with return_aggregate_stream, /run and /runsync get the list of pieces)."""
        self.start_background()
        if self.refusing:
            yield self._refused()
            return
        worker = await self.worker()
        self._job_begins()
        try:
            async for piece in worker.stream(str(job.get("id", "local")), job.get("input")):
                yield piece
        except WorkerError as exc:
            yield self._failed(exc)
        except Exception as exc:  # noqa: BLE001 (logged with its traceback; the caller gets an id, the worker serves on)
            yield self._failed(internal_error(job, exc))
        finally:
            self._job_ends()

    def _refused(self) -> dict[str, Any]:
        self._refused_one.set()
        return error_output(BudgetExceeded(
            "daily budget spent: this endpoint takes no more jobs today (the worker refuses the jobs queued for it "
            "and stops)"))  # fmt: skip

    def _job_begins(self) -> None:
        self._jobs_running += 1
        self._no_jobs.clear()

    def _job_ends(self) -> None:
        self._jobs_running -= 1
        if not self._jobs_running:
            self._no_jobs.set()

    def concurrency_modifier(self, current: int) -> int:
        """How many jobs the SDK may hold: none while draining, or while ENGINE_START=boot starts
        the engine; a few while the engine is cold (the endpoint's queue-delay scaler then sees
        the queue and can start other workers); MAX_CONCURRENCY once it runs."""
        self.start_background()  # the SDK calls this inside its loop before taking any job
        if self.refusing:  # past the limit without scale-to-zero: empty the queue, then leave
            return self.settings.max_concurrency
        if self.draining:
            return 0
        if self.engine.ready:
            return self.settings.max_concurrency
        if self.settings.platform.engine_start_mode == "boot" and self._early is not None and not self._early.done():
            return 0
        return min(self.settings.cold_concurrency, self.settings.max_concurrency)

    # ------------------------------------------------------------- the worker's own time
    def start_background(self) -> None:
        """In the running loop, once: the worker is ready; start the heartbeat; take over SIGTERM."""
        if self._heartbeat is not None:
            return
        loop = asyncio.get_running_loop()
        if self.settings.platform.engine_start_mode == "lazy":
            self.meter.worker_ready()
        else:  # boot: ready for jobs once the engine runs; background: ready now, the engine beside
            self._early = loop.create_task(self._start_engine_early(), name="engine-early-start")
            if self.settings.platform.engine_start_mode == "background":
                self.meter.worker_ready()
        self._heartbeat = loop.create_task(self._beat_forever(), name="budget-heartbeat")
        if self._on_exhausted is not None:
            self._endpoint_read = loop.create_task(self._read_endpoint(), name="endpoint-read")
        if self.settings.daily_budget_usd > 0 and self._on_exhausted is None:
            log.warning(
                "DAILY_BUDGET_USD is set without scale-to-zero (RUNPOD_API_KEY and RUNPOD_ENDPOINT_ID, "
                "BUDGET_SCALE_TO_ZERO): past the limit a worker refuses the jobs queued and stops, but RunPod starts "
                "a new one for each job that arrives later, each billed its start and one heartbeat (README)"
            )
        if self.handle_sigterm and threading.current_thread() is threading.main_thread():
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signal.SIGTERM, self._on_sigterm)

    async def _start_engine_early(self) -> None:
        """ENGINE_START=boot|background: start the engine without waiting for a cache miss. Its
        seconds are boot (before the worker takes jobs) or engine start-up (beside them)."""
        if self.settings.bill_initializing and self.settings.daily_budget_usd > 0:
            worker = await self.worker()
            if not await worker.reserve_engine_start():  # refused: the first admitted miss starts it
                self.meter.worker_ready()
                return
        self.meter.engine_starting()
        try:
            await self.engine.ensure_started()
        except WorkerError as exc:  # the next miss tries again and reports it; jobs are taken anyway
            log.error("engine start at %s failed: %s", self.settings.platform.engine_start_mode, exc.message)
        finally:
            self.meter.engine_ready()
            self.meter.worker_ready()

    async def _beat_forever(self) -> None:
        me = asyncio.current_task()
        try:
            while not self._stopping.is_set():
                await self.beat()
                if me is not None and me.cancelling():  # a cancel that a Redis call swallowed
                    raise asyncio.CancelledError
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.settings.budget_heartbeat_seconds)
        except asyncio.CancelledError:  # the loop is ending (the SDK stopped): count the last seconds
            await self.retire()
            raise

    async def beat(self) -> None:
        """One heartbeat: settle the overhead and running jobs so far (errors are logged; the worker
        keeps serving); past the limit, stop for the budget."""
        try:
            worker = await self.worker()
            await worker.heartbeat()
        except Exception:  # the heartbeat must never stop; the next one carries the totals
            log.exception("budget heartbeat failed")
            return
        if worker.budget.over_limit() and not (self.draining or self.refusing):
            self._stop_for_budget(worker.budget.snapshot())

    def _stop_for_budget(self, state: BudgetState) -> None:
        """Past the limit: every job, hit or refusal, would keep this worker billed for its idle tail,
        which no longer fits. With scale-to-zero: take no more jobs (queued ones wait for the next
        day), scale the endpoint to zero, let the jobs in flight finish (they are reserved), settle,
        exit. Without it RunPod would start a worker for each job left queued: refuse the queued jobs
        at once, and exit after one heartbeat without a job."""
        log.warning(
            "daily budget %s: %.6f USD spent and %.6f USD reserved of %.2f USD: this worker's idle tail no longer "
            "fits; it %s and exits",
            state.day, state.spent_usd, state.reserved_usd, state.limit_usd or 0.0,
            "takes no more jobs" if self._on_exhausted is not None else "refuses the jobs queued",
        )  # fmt: skip
        if self._on_exhausted is not None:
            self.draining = True
        else:
            self.refusing = True
        asyncio.get_running_loop().create_task(self._leave_for_budget(state), name="budget-exit")

    async def _leave_for_budget(self, state: BudgetState) -> None:
        if self._on_exhausted is not None and self._store is not None:
            try:
                await asyncio.wait_for(self._on_exhausted(state, self._store), SCALE_DOWN_S)
            except Exception:
                log.exception("scale-to-zero failed; RunPod may start workers for queued jobs")
        while self.refusing:  # leave after one heartbeat without a job to refuse
            self._refused_one.clear()
            try:
                await asyncio.wait_for(self._refused_one.wait(), self.settings.budget_heartbeat_seconds)
            except TimeoutError:
                break
        await self._no_jobs.wait()
        await self.aclose()
        self.over_budget.set()
        if self.handle_sigterm:  # the worker process's own app: leave the SDK's loop and the process
            asyncio.get_running_loop().call_soon(_exit_loop)

    async def retire(self) -> None:
        """Settle the worker's last overhead and drop its reservation (once)."""
        if self._retired or self._worker is None:
            return
        self._retired = True
        try:
            state = await self._worker.budget.retire(self._worker.overhead_usd(exiting=True),
                                                     self._worker.running_usd())  # fmt: skip
            log.info("worker stops: budget %s spent %.6f USD (overhead %.6f)", state.day, state.spent_usd,
                     state.overhead_usd)  # fmt: skip
        except Exception:
            log.exception("budget: the last settlement failed")

    def _on_sigterm(self) -> None:
        if not self.draining:
            self.draining = True
            log.warning("SIGTERM: draining (%d job(s) in flight)", self._jobs_running)
            asyncio.get_running_loop().create_task(self._drain_and_exit())

    async def _drain_and_exit(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._no_jobs.wait(), DRAIN_SECONDS)
        if self._jobs_running:
            log.warning("SIGTERM: %d job(s) still running after %.0f s; stopping", self._jobs_running, DRAIN_SECONDS)
        await self.aclose()
        asyncio.get_running_loop().call_soon(_exit_loop)  # out of a task: no "exception never retrieved"

    async def aclose(self) -> None:
        self._stopping.set()
        if self._endpoint_read is not None and not self._endpoint_read.done():
            self._endpoint_read.cancel()
        if self._heartbeat is not None and not self._heartbeat.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._heartbeat), STOP_HEARTBEAT_S)
            except TimeoutError:
                self._heartbeat.cancel()
        if self._worker is not None:
            await self._worker.drain()
        if self._owns_engine:
            await self.engine.aclose()
        await self.retire()  # after the engine's stop: its seconds are billed too
        if self._store is not None:
            await self._store.close()


def _exit_loop() -> None:
    raise SystemExit(0)


def create_app(
    settings: Settings,
    env: Mapping[str, str] | None = None,
    *,
    engine: Engine | None = None,
    store: Store | None = None,
    handle_sigterm: bool = False,
) -> App:
    return App(settings, env, engine=engine, store=store, handle_sigterm=handle_sigterm)
