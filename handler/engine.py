"""The engine manager: vLLM's OpenAI server as a child process, started lazily.

The only module that talks to vLLM. It starts the child on first use, waits for
``/health``, sends every request over one reused HTTP client, stops the child
after IDLE_TIMEOUT idle seconds (killing its whole process group, so no process
and no port remain) and starts it again on the next request. A child that dies
mid-request fails the requests in flight with `EngineCrashed`; the next request
starts a fresh one. Consecutive start failures set `needs_refresh`.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import functools
import logging
import os
import signal
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp
import orjson

from handler.engine_command import ModelRef, base_command, engine_args, engine_env, resolve_device
from handler.engine_phases import StartPhases
from handler.errors import EngineCrashed, EngineRequestError, EngineStartError, ValidationFailed
from handler.settings import EngineSettings

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 60
HEALTH_POLL_S = 0.5
STOP_GRACE_S = 10.0
PR_SET_PDEATHSIG = 1
LOST_WAIT_S = 2.0  # how long a failed request waits to see whether the child died


# vLLM's server closes a connection idle for VLLM_HTTP_TIMEOUT_KEEP_ALIVE (5 s); aiohttp keeps one
# for 15 s by default, and a request sent on a connection the server is closing at that moment
# fails as ServerDisconnectedError (seen once in 500 jobs: an answer lost as `engine_crashed`).
# The worker lets go of idle connections well before the server does.
KEEPALIVE_S = 2.0


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to kill it when the worker dies, however it dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class EngineManager:
    def __init__(
        self,
        settings: EngineSettings,
        model: ModelRef,
        *,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._model = model
        self._base_env = dict(os.environ if env is None else env)
        self.device = resolve_device(settings, self._base_env)
        self._clock = clock
        self._proc: asyncio.subprocess.Process | None = None
        self._client: aiohttp.ClientSession | None = None
        self._start_lock = asyncio.Lock()
        self._log_tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self._tasks: set[asyncio.Task[None]] = set()
        self._active = 0
        self._last_activity = clock()
        self._idle_task: asyncio.Task[None] | None = None
        self.start_failures = 0
        self.starts = 0
        self.starting_since: float | None = None  # the clock when the start in progress began
        self.last_start_seconds: float | None = None  # how long the last successful start took
        self.last_start_phases: dict[str, float] = {}  # its phases, from vLLM's log (handler.engine_phases)
        self.port: int | None = None
        self._timeout = settings.engine_request_timeout
        self._exit_hook: Callable[[], None] | None = None

    # ------------------------------------------------------------------ state
    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def ready(self) -> bool:
        """Running and answering (health passed)."""
        return self._is_ready()

    def _is_ready(self) -> bool:
        return self.running and self._client is not None

    @property
    def needs_refresh(self) -> bool:
        return self.start_failures >= self._settings.engine_max_start_failures

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def log_tail(self) -> list[str]:
        return list(self._log_tail)

    # ---------------------------------------------------------------- start
    async def ensure_started(self) -> float:
        """Start the engine unless it runs; return the seconds this call spent starting it."""
        if self.ready:
            return 0.0
        async with self._start_lock:
            if self._is_ready():  # another job started it while this one waited
                return 0.0
            started = self._clock()
            self.starting_since = started
            try:
                await self._start()
            except EngineStartError:
                self.start_failures += 1
                raise
            finally:
                self.starting_since = None
            self.start_failures = 0
            self.starts += 1
            self.last_start_seconds = self._clock() - started
            return self.last_start_seconds

    async def _start(self) -> None:
        await self._discard()
        port = self._settings.engine_port or free_port(self._settings.engine_host)
        cmd = base_command(self._settings) + engine_args(self._settings, self._model, self.device, port)
        log.info("starting engine: %s", " ".join(cmd))
        self._log_tail.clear()
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=engine_env(self._settings, self.device, self._base_env, self._model),
                start_new_session=True,  # its own process group: stop() kills vLLM's helpers too
                preexec_fn=_die_with_parent,
            )
        except OSError as exc:
            raise EngineStartError(f"cannot run engine command {cmd[0]!r}: {exc}") from exc
        self._proc, self.port = proc, port
        # the worker may leave by sys.exit (runpod's local test mode): take the engine along
        self._exit_hook = functools.partial(_kill_group, proc.pid)
        atexit.register(self._exit_hook)
        phases, spawned = StartPhases(), self._clock()
        self._spawn(self._pump_log(proc, phases, spawned))
        base_url = f"http://{self._settings.engine_host}:{port}"
        # aiohttp, not httpx: httpx's connection pool costs O(n^2) per request with
        # many requests in flight, which cut the handler's throughput by a third.
        client = aiohttp.ClientSession(
            base_url=base_url,
            timeout=aiohttp.ClientTimeout(total=self._settings.engine_request_timeout, connect=10.0),
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_S),
        )
        try:
            await self._wait_healthy(proc, client)
        except BaseException:
            await client.close()
            await self._kill(proc)
            self._proc = None
            raise
        self._client = client
        self.last_start_phases = phases.report(self._clock() - spawned)
        log.info("engine ready: %s", self.last_start_phases)
        self._touch()
        if self._settings.idle_timeout > 0 and self._idle_task is None:
            self._idle_task = asyncio.create_task(self._idle_watch())

    async def _wait_healthy(self, proc: asyncio.subprocess.Process, client: aiohttp.ClientSession) -> None:
        deadline = self._clock() + self._settings.engine_start_timeout
        while True:
            if proc.returncode is not None:
                await asyncio.sleep(0.2)  # let the log pump read the last lines
                raise EngineStartError(
                    f"engine exited with code {proc.returncode} while starting", log_tail=self.log_tail
                )
            try:
                async with client.get("/health", timeout=aiohttp.ClientTimeout(total=5.0)) as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass  # not listening yet
            if self._clock() > deadline:
                raise EngineStartError(
                    f"engine not healthy after {self._settings.engine_start_timeout:.0f} s", log_tail=self.log_tail
                )
            await asyncio.sleep(HEALTH_POLL_S)

    async def _pump_log(self, proc: asyncio.subprocess.Process, phases: StartPhases, spawned: float) -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            self._log_tail.append(line)
            if self.starting_since is not None:
                phases.feed(self._clock() - spawned, line)
            log.debug("engine: %s", line)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ----------------------------------------------------------------- stop
    async def stop(self) -> None:
        """Stop the child (whole process group) and close the client."""
        async with self._start_lock:
            await self._discard()

    async def _discard(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()
        proc, self._proc = self._proc, None
        if proc is not None:
            await self._kill(proc)

    async def _kill(self, proc: asyncio.subprocess.Process) -> None:
        if self._exit_hook is not None:
            atexit.unregister(self._exit_hook)
            self._exit_hook = None
        await self._signal_group(proc)

    async def _signal_group(self, proc: asyncio.subprocess.Process) -> None:
        for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                await asyncio.wait_for(proc.wait(), wait)
                break
            except TimeoutError:
                continue
        # vLLM's engine-core helpers live in the same group; make sure none linger.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    async def aclose(self) -> None:
        if self._idle_task is not None:
            self._idle_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._idle_task
            self._idle_task = None
        await self.stop()

    def _touch(self) -> None:
        self._last_activity = self._clock()

    async def _idle_watch(self) -> None:
        timeout = self._settings.idle_timeout
        while True:
            await asyncio.sleep(min(timeout / 4, 5.0))
            idle = self._clock() - self._last_activity
            if self.running and self._active == 0 and idle >= timeout and not self._start_lock.locked():
                log.info("engine idle for %.0f s: stopping it", idle)
                await self.stop()

    # ------------------------------------------------------------- requests
    def _require_client(self) -> aiohttp.ClientSession:
        if self._client is None or not self.running:
            raise EngineCrashed("the engine is not running (it stopped or died); the next job restarts it")
        return self._client

    async def _lost(self, exc: aiohttp.ClientError) -> EngineCrashed:
        """The connection failed mid-request: find out whether the child is gone, and if it
        is (or it no longer accepts connections) drop it so the next job starts a fresh one."""
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), LOST_WAIT_S)
        code = proc.returncode if proc is not None else None
        if proc is not None and (code is not None or isinstance(exc, aiohttp.ClientConnectorError)):
            async with self._start_lock:
                if self._proc is proc:
                    await self._discard()
        state = f"exited with code {code}" if code is not None else "dropped the connection"
        return EngineCrashed(f"the engine {state} during the request ({type(exc).__name__}); the next job restarts it")

    @contextlib.asynccontextmanager
    async def _call(self) -> AsyncIterator[aiohttp.ClientSession]:
        """One request in flight: counted for the idle watch, failures translated."""
        client = self._require_client()
        self._active += 1
        try:
            yield client
        except aiohttp.ClientError as exc:
            raise await self._lost(exc) from exc
        except TimeoutError as exc:
            raise EngineRequestError(f"the engine did not answer within {self._timeout:.0f} s", status=504) from exc
        finally:
            self._active -= 1
            self._touch()

    async def request(self, route: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """One non-streaming request (GET when body is None)."""
        async with self._call() as client:
            if body is None:
                async with client.get(route) as response:
                    status, content = response.status, await response.read()
            else:
                async with client.post(route, data=orjson.dumps(body), headers=_JSON) as response:
                    status, content = response.status, await response.read()
        raise_for_status(status, content)
        result: dict[str, Any] = orjson.loads(content)
        return result

    async def stream(self, route: str, body: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """A streaming request: yields each server-sent event's JSON (usage comes in the last)."""
        # continuous usage: every chunk carries the running token counts (the meter bills by them)
        payload = {**body, "stream": True, "stream_options": {"include_usage": True, "continuous_usage_stats": True}}
        async with self._call() as client, client.post(route, data=orjson.dumps(payload), headers=_JSON) as response:
            if response.status != 200:
                raise_for_status(response.status, await response.read())
            async for raw in response.content:
                line = raw.strip()
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    return
                yield orjson.loads(data)


_JSON = {"content-type": "application/json"}


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def raise_for_status(status: int, content: bytes) -> None:
    if status == 200:
        return
    try:
        detail = orjson.loads(content)
        message = detail.get("error", {}).get("message") or detail.get("message") or str(detail)
    except (orjson.JSONDecodeError, AttributeError):
        message = content.decode(errors="replace")[:500]
    if 400 <= status < 500 and status != 429:  # the request itself is wrong (e.g. over the context length)
        raise ValidationFailed(f"the engine refused the request: {message}", field="input")
    raise EngineRequestError(f"engine answered {status}: {message}", status=status)
