"""`python -m handler.samples [DIR]`: run every sample job through the real handler.

Jobs run in file-name order, each through the same worker (so a repeated job is
answered from the cache). Streaming jobs print their pieces as they arrive.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from core.cli import USAGE, run_command
from core.errors import CoreError
from handler.app import App, create_app
from handler.errors import WorkerError
from handler.settings import load_settings


def _show(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


async def run_job(app: App, name: str, job: dict[str, Any]) -> None:
    print(f"\n=== {name}\ninput: {orjson.dumps(job['input']).decode()}", flush=True)
    started = time.perf_counter()
    if job["input"].get("stream"):
        print("stream: ", end="", flush=True)
        last: dict[str, Any] = {}
        async for piece in app.generator_handler({"id": name, **job}):
            if "text" in piece and len(piece) == 1:
                print(piece["text"], end="", flush=True)
            last = piece
        print(f"\nfinal: {_show(last)}")
    else:
        print(f"output: {_show(await app.handler({'id': name, **job}))}")
    print(f"({time.perf_counter() - started:.2f} s)", flush=True)


async def run_all(folder: Path) -> int:
    app = create_app(load_settings(os.environ))  # a ConfigError is reported by run_command (exit 2)
    print(f"model: {app.model.name} ({app.model.path}), device: {app.engine.device}")
    jobs = [(path.stem, orjson.loads(path.read_bytes())) for path in sorted(folder.glob("*.json"))]  # noqa: ASYNC240
    try:
        for name, job in jobs:
            await run_job(app, name, job)
    finally:
        await app.aclose()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m handler.samples", description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default="sample_jobs", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    return run_command(lambda: asyncio.run(run_all(args.folder)), (WorkerError, CoreError), code=USAGE)


if __name__ == "__main__":
    sys.exit(main())
