"""`python -m handler.resume`: bring back an endpoint the budget scaled to zero, once a new budget day begins.

Past the limit a worker scales its endpoint to zero (handler.app) and keeps the workers it
had in the store (handler.pause); no worker is left to undo it. This command, run from
anywhere with the worker's REDIS_URL, BUDGET_NAMESPACE, BUDGET_TIMEZONE, DAILY_BUDGET_USD and
RUNPOD_API_KEY, restores them when the budget day that was spent is over, or the same day
when what is left holds twice the margin kept for worker starts (the endpoint was stopped by
reservations that have gone, not by spending):

    python -m handler.resume              once (a cron job: every 10 minutes is plenty)
    python -m handler.resume --every 300  in a loop, checking every 300 s

Jobs queued while the endpoint was at zero wait in RunPod's queue (up to their ttl, 24 h by
default) and run once workers start again.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence

from core.cli import USAGE, run_command
from core.endpoints import scale_endpoint
from core.errors import CoreError
from handler import pause
from handler.budget import Budget
from handler.endpoint_control import fleet_margin_usd
from handler.errors import ConfigError, WorkerError
from handler.rates import hourly_rate
from handler.settings import Settings, load_settings
from handler.store import open_store

log = logging.getLogger(__name__)


async def resume_once(
    settings: Settings, *, base_url: str | None = None, clock: Callable[[], float] = time.time
) -> str:
    """Restore the paused endpoint if its budget day is over, or if enough is left the same day; say
    what was done (`clock`: for tests; the default follows the store's clock)."""
    store = await open_store(settings.redis_url)
    try:
        paused = await pause.read(store, settings.budget_namespace)
        if paused is None:
            return "nothing to resume: no endpoint was scaled to zero by the budget"
        budget = Budget(store, settings.budget, clock=clock)
        await budget.accrue(None, 0.0)  # its answer carries the store's clock, which sets the day
        state = await budget.state()
        today = state.day
        remaining = state.remaining_usd
        if not pause.due(paused, today):
            # the same day: back only when what is left (the reservations that stopped it gone) holds the
            # margin for new workers' starts twice over, so they have work to do before they stop again
            room = 2 * fleet_margin_usd(settings, workers_max=paused.workers_max,
                                        idle_timeout=settings.endpoint_idle_timeout,
                                        rate=hourly_rate(settings.budget))  # fmt: skip
            if remaining is None or remaining < room:
                return (f"endpoint {paused.endpoint_id} stays at zero: its budget day {paused.day} is not over "
                        f"({today}) and {max(0.0, remaining or 0.0):.6f} USD left is under {room:.6f} USD")  # fmt: skip
        elif remaining is not None and remaining <= 0:
            return f"endpoint {paused.endpoint_id} stays at zero: the budget of {today} is spent too"
        await asyncio.to_thread(scale_endpoint, paused.endpoint_id, paused.workers_min, paused.workers_max,
                                api_key=settings.runpod_api_key, base_url=base_url)  # fmt: skip
        await pause.clear(store, settings.budget_namespace)
        return (
            f"endpoint {paused.endpoint_id} resumed with workers {paused.workers_min}/{paused.workers_max} "
            f"(paused for {paused.day}, now {today})"
        )
    finally:
        await store.close()


async def _loop(settings: Settings, every: float | None) -> None:
    while True:
        print(await resume_once(settings), flush=True)
        if every is None:
            return
        await asyncio.sleep(every)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m handler.resume", description=__doc__.split("\n\n")[0])
    parser.add_argument("--every", type=float, default=None, help="check again every this many seconds")
    args = parser.parse_args(argv)

    def command() -> int:
        settings = load_settings(os.environ)
        if not settings.runpod_api_key:
            raise ConfigError("RUNPOD_API_KEY is needed to scale the endpoint back up", field="RUNPOD_API_KEY")
        asyncio.run(_loop(settings, args.every))
        return 0

    return run_command(command, (WorkerError, CoreError), code=USAGE)


if __name__ == "__main__":
    sys.exit(main())
