"""Cache and spend figures per day, from the shared store.

    python -m handler.stats cache [--days N] [--json]   hits, misses, hit rate, money saved
    python -m handler.stats spend [--days N] [--json]   spent (jobs and overhead apart), reserved, limit

Reads the same environment as the worker (REDIS_URL, CACHE_NAMESPACE,
DAILY_BUDGET_USD, BUDGET_TIMEZONE).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from core.cli import USAGE, run_command
from core.errors import CoreError
from core.tables import table
from handler.budget import Budget
from handler.cache import ResponseCache
from handler.errors import WorkerError
from handler.settings import Settings, load_settings
from handler.store import open_store


async def collect(what: str, settings: Settings, days: int) -> list[dict[str, Any]]:
    store = await open_store(settings.redis_url)
    try:
        if what == "cache":
            return await ResponseCache(store, settings.cache, {}).daily_stats(days)
        return await Budget(store, settings.budget).daily_spend(days)
    finally:
        await store.close()


def totals(what: str, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    if what == "cache":
        hits = sum(r["hits"] for r in rows)
        misses = sum(r["misses"] for r in rows)
        rate = hits / (hits + misses) if hits + misses else 0.0
        return {
            "day": "total",
            "hits": hits,
            "misses": misses,
            "hit_rate": rate,
            "saved_usd": sum(r["saved_usd"] for r in rows),
        }
    summed = ("spent_usd", "jobs", "jobs_usd", "overhead_usd", "boot_usd", "engine_start_usd", "idle_usd")
    return {"day": "total", **{name: sum(r[name] for r in rows) for name in summed}}


COLUMNS = {
    "cache": ["day", "hits", "misses", "hit_rate", "saved_usd"],
    "spend": [
        "day",
        "spent_usd",
        "jobs_usd",
        "jobs",
        "overhead_usd",
        "boot_usd",
        "engine_start_usd",
        "idle_usd",
        "reserved_usd",
        "limit_usd",
        "remaining_usd",
    ],
}


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m handler.stats", description="Cache and spend figures per day.")
    parser.add_argument("what", choices=sorted(COLUMNS), help="cache: hit statistics; spend: budget per day")
    parser.add_argument("--days", type=int, default=7, help="how many days back, today included (default 7)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error("--days must be at least 1")

    def show() -> int:
        settings = load_settings(os.environ if env is None else env)  # bad settings: ConfigError
        rows = asyncio.run(collect(args.what, settings, args.days))  # Redis unreachable: StoreUnavailable
        if not settings.redis_url:
            print("note: REDIS_URL is empty, so this shows a fresh in-process store (no figures)", file=sys.stderr)
        if args.json:
            sys.stdout.write(orjson.dumps({"rows": rows, "total": totals(args.what, rows)}).decode() + "\n")
        else:
            columns = COLUMNS[args.what]
            print(
                table(
                    columns,
                    [[row.get(c) for c in columns] for row in [*rows, totals(args.what, rows)]],
                    numbers_right=True,
                )
            )
        return 0

    return run_command(show, (WorkerError, CoreError), code=USAGE)


if __name__ == "__main__":
    raise SystemExit(main())
