"""Helpers for the tests of the local RunPod platform (devtools.platform).

`echo_config` runs the trivial SDK worker (`devtools.platform.echo_worker`);
`FAST` shrinks RunPod's policy minimums so timeouts and ttl take a fraction of
a second; `Client` is raw HTTP to the endpoint API; `ProcWatch` follows a
worker process through /proc from the test's side (start time from
/proc/<pid>/stat, exit when the pid is gone or a zombie), an account of its
life that does not come from the platform.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import runpod

from devtools.platform import Endpoint, EndpointConfig, Limits, Platform

REPO_ROOT = Path(__file__).resolve().parent.parent
ECHO_WORKER = [sys.executable, "-m", "devtools.platform.echo_worker"]
FAST = Limits(execution_timeout_min_ms=100, ttl_min_ms=100, stop_poll_hold=5.0)
API_KEY = "test-key"


def echo_config(**overrides: Any) -> EndpointConfig:
    settings: dict[str, Any] = {
        "worker_command": ECHO_WORKER,
        "cwd": REPO_ROOT,
        "workers_max": 1,
        "idle_timeout": 0.5,
        "stop_grace": 5.0,
        "execution_timeout": 60.0,
    }
    settings.update(overrides)
    return EndpointConfig(**settings)


class Client:
    """The endpoint API over raw HTTP: (status code, JSON body)."""

    def __init__(self, session: aiohttp.ClientSession, url: str, endpoint_id: str) -> None:
        self.session, self.base = session, f"{url}/v2/{endpoint_id}"

    async def call(self, method: str, route: str, body: Any = None) -> tuple[int, Any]:
        async with self.session.request(method, f"{self.base}/{route}", json=body) as response:
            return response.status, await response.json(content_type=None)

    async def run(self, job_input: Any, **extra: Any) -> dict[str, Any]:
        status, body = await self.call("POST", "run", {"input": job_input, **extra})
        assert status == 200, body
        return dict(body)

    async def status(self, job_id: str) -> tuple[int, Any]:
        return await self.call("GET", f"status/{job_id}")


async def wait_status(client: Client, job_id: str, wanted: set[str], seconds: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        code, state = await client.status(job_id)
        if code == 200 and state["status"] in wanted:
            return dict(state)
        assert time.monotonic() < deadline, f"job {job_id} never reached {wanted}: {code} {state}"
        await asyncio.sleep(0.02)


def dump_logs(ep: Endpoint) -> None:
    """Print every worker's log (pytest shows it when the test fails)."""
    for entry in ep.ledger():
        log = ep.worker_logs(entry.worker_id)[-4000:]
        print(f"===== {entry.worker_id} ({entry.state}, exit {entry.exit_code})\n{log}")


class ProcWatch:
    """A process seen from outside: start and exit on the platform's clock (time.monotonic)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        ticks = os.sysconf("SC_CLK_TCK")
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot_offset = time.clock_gettime(time.CLOCK_BOOTTIME) - time.monotonic()
        self.started_at = int(fields[19]) / ticks - boot_offset  # field 22 of stat: start time since boot
        self.exited_at: float | None = None

    def alive(self) -> bool:
        try:
            state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):  # gone, or going while /proc was read (ESRCH)
            return False
        return state not in ("Z", "X")

    async def wait_exit(self, seconds: float, poll: float = 0.005) -> float:
        deadline = time.monotonic() + seconds
        while self.alive():
            assert time.monotonic() < deadline, f"pid {self.pid} still alive"
            await asyncio.sleep(poll)
        self.exited_at = time.monotonic()
        return self.exited_at


@contextlib.asynccontextmanager
async def running_platform(monkeypatch: Any, limits: Limits | None = None) -> AsyncIterator[Platform]:
    """A platform with the runpod SDK pointed at it; every worker's log is printed at the end
    (pytest shows it when the test fails). The tests' `platform` fixtures use it."""
    async with Platform(limits=limits) as server:
        monkeypatch.setattr(runpod, "endpoint_url_base", f"{server.url}/v2")
        monkeypatch.setattr(runpod, "api_key", API_KEY)
        try:
            yield server
        finally:
            for ep in server.endpoints.values():
                dump_logs(ep)
