"""`python -m devtools.platform`: serve the local platform, or send jobs through it and print the bill.

    python -m devtools.platform                          serve the echo worker on :8765 until Ctrl-C
    python -m devtools.platform --real-worker --jobs sample_jobs --gpu-type "NVIDIA GeForce RTX 4090"
                                                         the real worker (`python -m handler`): each job file
                                                         through runpod.Endpoint(...).run_sync, then the bill

With `--jobs` the platform starts, sends every job file (one by one, or all at
once with `--concurrent`), prints each answer, waits until the endpoint is back
to `--workers-min` workers (so the bill holds the idle timeout and the stop),
prints the bill and exits. Without it, it serves until interrupted and prints
the bill then. `--json` prints the bill as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

from devtools.platform.config import SCALER_TYPES, EndpointConfig
from devtools.platform.endpoint import Endpoint
from devtools.platform.report import render
from devtools.platform.server import Platform

ECHO_WORKER = [sys.executable, "-m", "devtools.platform.echo_worker"]
REAL_WORKER = [sys.executable, "-m", "handler"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m devtools.platform", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    p.add_argument("--api-key", default=None, help="require this API key from callers (default: any)")
    p.add_argument("--endpoint-id", default="local")
    worker = p.add_mutually_exclusive_group()
    worker.add_argument("--worker-command", default=None, help="one worker process's command (shell-quoted)")
    worker.add_argument("--real-worker", action="store_true", help=f"run `{' '.join(REAL_WORKER)}`")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="worker environment (repeat)")
    p.add_argument("--workers-min", type=int, default=0)
    p.add_argument("--workers-max", type=int, default=3)
    p.add_argument("--idle-timeout", type=float, default=5.0)
    p.add_argument("--scaler-type", choices=SCALER_TYPES, default="QUEUE_DELAY")
    p.add_argument("--scaler-value", type=float, default=4)
    p.add_argument("--container-start-delay", type=float, default=0.0)
    p.add_argument("--execution-timeout", type=float, default=600.0, help="seconds")
    price = p.add_mutually_exclusive_group()
    price.add_argument("--gpu-hourly-rate", type=float, default=None, help="USD per worker-hour")
    price.add_argument(
        "--gpu-type", default=None, help="price the bill as this GPU (core/data/prices.json); workers get GPU_TYPE"
    )
    p.add_argument("--no-bill-initializing", action="store_true", help="the bill's default reading leaves it out")
    p.add_argument("--jobs", type=Path, default=None, help="a job file, or a folder of them, to send and exit")
    p.add_argument("--concurrent", action="store_true", help="send the jobs at once")
    p.add_argument("--timeout", type=int, default=900, help="run_sync timeout per job (s)")
    p.add_argument("--json", action="store_true", help="print the bill as JSON")
    return p.parse_args(argv)


def endpoint_config(args: argparse.Namespace) -> EndpointConfig:
    command = REAL_WORKER if args.real_worker else ECHO_WORKER
    if args.worker_command:
        command = shlex.split(args.worker_command)
    env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--env wants KEY=VALUE, got {item!r}")
        env[key] = value
    rate = args.gpu_hourly_rate or 0.0
    if args.gpu_type:
        from core.prices import load_prices

        rate = load_prices().hourly_rate(args.gpu_type)
        env.setdefault("GPU_TYPE", args.gpu_type)  # the worker prices its own seconds alike
    return EndpointConfig(
        worker_command=command,
        env=env,
        workers_min=args.workers_min,
        workers_max=args.workers_max,
        idle_timeout=args.idle_timeout,
        scaler_type=args.scaler_type,
        scaler_value=args.scaler_value,
        container_start_delay=args.container_start_delay,
        gpu_hourly_rate=rate,
        bill_initializing=not args.no_bill_initializing,
        execution_timeout=args.execution_timeout,
        gpu_type=(args.gpu_type or "LOCAL").replace(" ", "+"),
    )


def job_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.json")) if path.is_dir() else [path]


def run_sync(url: str, endpoint_id: str, api_key: str, request: dict[str, Any], timeout: int) -> Any:
    """One job through the runpod SDK, as a caller sends it."""
    import runpod

    runpod.endpoint_url_base = f"{url}/v2"  # the SDK reads RUNPOD_ENDPOINT_BASE_URL only at import
    return runpod.Endpoint(endpoint_id, api_key=api_key).run_sync(request, timeout=timeout)


async def send_jobs(platform: Platform, ep: Endpoint, args: argparse.Namespace) -> None:
    files = job_files(args.jobs)
    key = args.api_key or "local-key"

    async def one(path: Path) -> None:
        request = json.loads(path.read_text())  # noqa: ASYNC240
        answer = await asyncio.to_thread(run_sync, platform.url, ep.id, key, request, args.timeout)
        print(f"--- {path.name}\n{json.dumps(answer, indent=2) if answer is not None else '(no output: FAILED)'}")

    if args.concurrent:
        await asyncio.gather(*(one(path) for path in files))
    else:
        for path in files:
            await one(path)
    print("\njobs:")
    for job in ep.board.jobs.values():
        state = job.state()
        error = f"  error: {str(job.error)[:160]}" if job.error is not None else ""
        print(
            f"  {job.id}  {state['status']:<10} worker {state.get('workerId', '-')}  "
            f"delay {state.get('delayTime', 0)} ms  execution {state.get('executionTime', 0)} ms{error}"
        )
    wait = ep.config.idle_timeout + ep.config.stop_grace + 30
    print(f"\nwaiting for the endpoint to scale down to {ep.config.workers_min} workers ...", flush=True)
    await ep.wait_workers(ep.config.workers_min, timeout=wait)


async def serve(args: argparse.Namespace) -> int:
    config = endpoint_config(args)
    platform = Platform(host=args.host, port=args.port, api_key=args.api_key, default_config=config)
    async with platform:
        ep = platform.add_endpoint(args.endpoint_id, config)
        print(
            f"local RunPod platform on {platform.url}: endpoint {ep.id!r} runs `{shlex.join(config.worker_command)}`;"
            f" RUNPOD_ENDPOINT_BASE_URL={platform.url}/v2 RUNPOD_API_BASE_URL={platform.url}",
            file=sys.stderr,
            flush=True,
        )
        if args.jobs is not None:
            await send_jobs(platform, ep, args)
        else:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
            print("stopping workers ...", file=sys.stderr, flush=True)
        await asyncio.gather(*(e.close() for e in platform.endpoints.values()))  # the bill ends when all exited
        bills = platform.bill()
    print(render(bills, as_json=args.json))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(serve(args))
    return 130
