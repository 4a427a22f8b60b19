"""One worker's OS process: the environment a deployed RunPod worker gets, spawn, stop, logs.

The process runs in its own session (its own process group), standing in for
the worker's container: stopping it sends SIGTERM to the main process (as
`docker stop` does to PID 1), then SIGKILL to the whole group after the grace
period; once the main process has exited the rest of its group is killed too
(a container's processes end with it). Its stdout and stderr go to one log
file.

`worker_env` builds the environment: the platform's own environment (so PATH,
HOME and virtual environments work), then the defaults below, then the
endpoint's env, then the variables RunPod sets, which the endpoint's env
cannot override:

    RUNPOD_WEBHOOK_GET_JOB      <url>/v2/<ep>/job-take/$ID?gpu=<gpu>
    RUNPOD_WEBHOOK_POST_OUTPUT  <url>/v2/<ep>/job-done/$RUNPOD_POD_ID/$ID?gpu=<gpu>
    RUNPOD_WEBHOOK_POST_STREAM  <url>/v2/<ep>/job-stream/$RUNPOD_POD_ID/$ID?gpu=<gpu>
    RUNPOD_WEBHOOK_PING         <url>/v2/<ep>/ping/$RUNPOD_POD_ID?gpu=<gpu>
    RUNPOD_POD_ID, RUNPOD_POD_HOSTNAME, RUNPOD_ENDPOINT_ID, RUNPOD_AI_API_KEY, RUNPOD_GPU_COUNT

(the SDK substitutes `$ID` and `$RUNPOD_POD_ID` and appends `&...` query
parameters, so each URL carries a query string already). Defaults:
`RUNPOD_SKIP_AUTO_SYSTEM_CHECKS=true` and `RUNPOD_SKIP_GPU_CHECK=true`,
because the SDK's start-up fitness checks (4 GB free memory, a TCP connection
to 8.8.8.8, nvidia-smi) describe a RunPod host, not this machine, and a failed
check kills the worker; `PYTHONUNBUFFERED=1` so logs arrive as written.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping
from pathlib import Path

DEFAULT_ENV = {
    "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
    "RUNPOD_SKIP_GPU_CHECK": "true",
    "PYTHONUNBUFFERED": "1",
}
_PLATFORM_KEYS = ("RUNPOD_POD_ID", "RUNPOD_POD_HOSTNAME", "RUNPOD_ENDPOINT_ID", "RUNPOD_AI_API_KEY")
SPAWN_FAILED = 127  # exit code recorded when the command cannot be started at all


def webhook_urls(base_url: str, endpoint_id: str, gpu: str) -> dict[str, str]:
    query = f"?gpu={gpu}"
    root = f"{base_url}/v2/{endpoint_id}"
    return {
        "RUNPOD_WEBHOOK_GET_JOB": f"{root}/job-take/$ID{query}",
        "RUNPOD_WEBHOOK_POST_OUTPUT": f"{root}/job-done/$RUNPOD_POD_ID/$ID{query}",
        "RUNPOD_WEBHOOK_POST_STREAM": f"{root}/job-stream/$RUNPOD_POD_ID/$ID{query}",
        "RUNPOD_WEBHOOK_PING": f"{root}/ping/$RUNPOD_POD_ID{query}",
    }


def worker_env(
    *,
    base_url: str,
    endpoint_id: str,
    worker_id: str,
    api_key: str,
    gpu: str,
    endpoint_env: Mapping[str, str],
    inherited: Mapping[str, str] | None = None,
) -> dict[str, str]:
    env = {
        k: v
        for k, v in (os.environ if inherited is None else inherited).items()
        if not k.startswith("RUNPOD_WEBHOOK_") and k not in _PLATFORM_KEYS
    }
    env.update(DEFAULT_ENV)
    env.update(endpoint_env)
    env.update(webhook_urls(base_url, endpoint_id, gpu))
    env.update(
        {
            "RUNPOD_POD_ID": worker_id,
            "RUNPOD_POD_HOSTNAME": f"{worker_id}-local",
            "RUNPOD_ENDPOINT_ID": endpoint_id,
            "RUNPOD_AI_API_KEY": api_key,
            "RUNPOD_GPU_COUNT": "1",
        }
    )
    return env


class WorkerProcess:
    """A worker command run as its own process group, logging to `log_path`."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: str | Path | None, log_path: Path) -> None:
        self.argv, self.env, self.cwd, self.log_path = argv, env, cwd, log_path
        self.proc: asyncio.subprocess.Process | None = None
        self._kill_timer: asyncio.TimerHandle | None = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    async def spawn(self) -> int | None:
        """Start the process; its pid, or None when the command cannot start (the reason is in the log)."""
        with open(self.log_path, "ab") as log:  # noqa: ASYNC230  (a local file, opened once per worker)
            try:
                self.proc = await asyncio.create_subprocess_exec(
                    *self.argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    env=self.env,
                    cwd=self.cwd,
                    start_new_session=True,
                )
            except OSError as exc:
                log.write(f"[platform] cannot start {self.argv!r}: {exc}\n".encode())
                return None
        return self.proc.pid

    async def wait(self) -> int:
        assert self.proc is not None
        code = await self.proc.wait()
        if self._kill_timer is not None:
            self._kill_timer.cancel()
        self._signal_group(signal.SIGKILL)  # the container ends with its main process
        return code

    def stop(self, grace: float) -> None:
        """SIGTERM now, SIGKILL to the group after `grace` seconds unless it exited first."""
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        if self._kill_timer is None:
            self._kill_timer = asyncio.get_running_loop().call_later(grace, self.kill)

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self._signal_group(signal.SIGKILL)

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
