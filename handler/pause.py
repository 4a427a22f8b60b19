"""The endpoint paused by the budget: what its workers were, so the next budget day restores them.

Past the limit a worker scales its endpoint to zero (handler.app); RunPod then starts no
worker for queued jobs, and no worker is left to undo it. The workers the endpoint had
are kept in the store (`record`); `python -m handler.resume` reads them back and, once a
new budget day has begun, scales the endpoint up again (`due`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import orjson

from handler import keys
from handler.store.base import CacheStore


@dataclass(frozen=True)
class Pause:
    day: str  # the budget day that was spent
    endpoint_id: str
    workers_min: int
    workers_max: int


async def record(store: CacheStore, namespace: str, pause: Pause) -> None:
    await store.set(keys.budget_pause(namespace), orjson.dumps(asdict(pause)), keys.PAUSE_KEEP_SECONDS * 1000)


async def read(store: CacheStore, namespace: str) -> Pause | None:
    raw = await store.get(keys.budget_pause(namespace))
    if raw is None:
        return None
    try:
        data = orjson.loads(raw)
        return Pause(str(data["day"]), str(data["endpoint_id"]), int(data["workers_min"]), int(data["workers_max"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


async def clear(store: CacheStore, namespace: str) -> None:
    await store.delete(keys.budget_pause(namespace))


def due(pause: Pause, today: str) -> bool:
    """A pause ends when a later budget day begins (days are ISO dates: they sort as text)."""
    return today > pause.day
