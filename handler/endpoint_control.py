"""What the worker asks of its own endpoint through RunPod's REST API, with RUNPOD_API_KEY.

- At start, `read_figures`: the endpoint's idle timeout and workers max, the bill's own
  figures for the budget's idle tail and fleet margin (a key that cannot read the endpoint
  is said once: the cap then cannot stop RunPod from starting workers).
- Past the limit, `scale_to_zero_hook`: set the endpoint's workers to 0 so RunPod starts
  no more for queued jobs, keeping what it had for `python -m handler.resume` (handler.pause).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from core.money import cost_usd
from handler import pause
from handler.budget import BudgetState
from handler.errors import ConfigError
from handler.exposure import PROCESS_START_S, fleet_margin_seconds, idle_tail_seconds
from handler.settings import Settings
from handler.store.base import Store

log = logging.getLogger(__name__)

ExhaustedHook = Callable[[BudgetState, Store], Awaitable[None]]


@dataclass(frozen=True)
class EndpointFigures:
    idle_timeout: float | None  # seconds; None: not given
    workers_max: int | None


def fleet_margin_usd(settings: Settings, *, workers_max: int, idle_timeout: float, rate: float) -> float:
    """What the budget keeps free of jobs for the workers the endpoint may still start: each is billed
    its start (and boot, where start-up is billed) and its idle tail even if it refuses every job."""
    boot = PROCESS_START_S + (settings.worker_boot_seconds if settings.bill_initializing else 0.0)
    tail = idle_tail_seconds(idle_timeout, settings.budget_heartbeat_seconds)
    return cost_usd(fleet_margin_seconds(workers_max, boot, tail), rate)


async def read_figures(settings: Settings) -> EndpointFigures | None:
    """The endpoint's idle timeout and workers max (None where the read failed, said once)."""
    from core.endpoints import get_endpoint
    from core.errors import CoreError

    try:
        endpoint = await asyncio.to_thread(get_endpoint, settings.runpod_endpoint_id, api_key=settings.runpod_api_key)
    except CoreError as exc:
        log.error("RUNPOD_API_KEY cannot read endpoint %s (%s): past the limit the worker cannot scale it to zero, "
                  "and RunPod may keep starting workers", settings.runpod_endpoint_id, exc)  # fmt: skip
        return None
    workers = endpoint.get("workers") or {}
    idle, most = workers.get("idleTimeout"), workers.get("max")
    return EndpointFigures(
        idle_timeout=float(idle) if isinstance(idle, int | float) and idle > 0 else None,
        workers_max=most if isinstance(most, int) and most > 0 else None,
    )


def scale_to_zero_hook(settings: Settings) -> ExhaustedHook | None:
    """Past the limit, set this endpoint's workers to 0 so RunPod starts no more for queued jobs
    (BUDGET_SCALE_TO_ZERO; auto: whenever an API key and the endpoint id are given). The workers
    it had are kept in the store for `python -m handler.resume`, which restores them the next day."""
    if not settings.scale_to_zero_enabled:
        return None
    if not (settings.runpod_endpoint_id and settings.runpod_api_key):
        raise ConfigError(
            "BUDGET_SCALE_TO_ZERO needs RUNPOD_ENDPOINT_ID and RUNPOD_API_KEY", field="BUDGET_SCALE_TO_ZERO"
        )

    async def hook(state: BudgetState, store: Store) -> None:
        from core.endpoints import get_endpoint, scale_to_zero

        endpoint_id, key = settings.runpod_endpoint_id, settings.runpod_api_key
        log.warning("daily budget spent (%s): scaling endpoint %s to zero", state.day, endpoint_id)
        endpoint = await asyncio.to_thread(get_endpoint, endpoint_id, api_key=key)
        workers = endpoint.get("workers") or {}
        if int(workers.get("max") or 0) > 0:  # not already paused: remember what to restore
            await pause.record(store, settings.budget_namespace, pause.Pause(
                day=state.day, endpoint_id=endpoint_id, workers_min=int(workers.get("min") or 0),
                workers_max=int(workers.get("max") or 0)))  # fmt: skip
        await asyncio.to_thread(scale_to_zero, endpoint_id, key)

    return hook
