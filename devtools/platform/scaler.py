"""Scaling decisions, as pure functions of the endpoint's state.

RunPod documents its scalers in one sentence each; this is the reading used here:

- QUEUE_DELAY (`scaler_value` seconds): a normal job waiting longer than that asks
  for one more worker, less the workers already starting. From zero workers, the
  first worker starts at once when a normal job is queued (waiting `scaler_value`
  seconds before a cold start is not what RunPod users observe).
- REQUEST_COUNT (`scaler_value` jobs per worker): ceil((queued + in progress) /
  scaler_value) workers.

Both stay within [workers_min, workers_max]. `lowPriority` jobs never ask for
workers (RunPod: "job won't trigger worker scaling"); they run on workers that
exist. Scaling down happens only through the idle timeout: a worker idle for
`idle_timeout` seconds stops, unless that would leave fewer than `workers_min`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ScaleState:
    scaler_type: str
    scaler_value: float
    workers_min: int
    workers_max: int
    queued: int  # normal-priority jobs in the queue
    overdue: int  # of those, how many waited longer than scaler_value seconds
    in_progress: int
    alive: int  # workers started and not stopping (initializing included)
    initializing: int


def wanted(state: ScaleState) -> int:
    """How many workers the endpoint should have now (`to_start` never stops any: scale-down is by idleness)."""
    if state.scaler_type == "REQUEST_COUNT":
        want = math.ceil((state.queued + state.in_progress) / state.scaler_value)
    elif state.alive == 0 and state.queued:
        want = 1
    else:
        want = state.alive + max(0, state.overdue - state.initializing)
    return min(max(want, state.workers_min), state.workers_max)


def to_start(state: ScaleState) -> int:
    return max(0, wanted(state) - state.alive)


def idle_to_stop(
    idle_since: dict[str, float], now: float, idle_timeout: float, alive: int, workers_min: int
) -> list[str]:
    """Workers idle past the timeout, longest idle first, keeping `workers_min` alive."""
    expired = sorted((since, wid) for wid, since in idle_since.items() if now - since >= idle_timeout)
    spare = max(0, alive - workers_min)
    return [wid for _, wid in expired[:spare]]
