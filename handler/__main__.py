"""`python -m handler`: start the worker under the runpod SDK.

runpod's own flags work (`--test_input '{...}'`, `--rp_serve_api`, ...). When
running locally (no RunPod job queue) the plain handler is registered, because
the SDK's local test mode does not run generator handlers; on RunPod the
streaming handler is registered with aggregated output.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from types import FrameType
from typing import Any

from handler.app import create_app
from handler.errors import ConfigError
from handler.sdk_boot import fast_cpu_probe
from handler.sdk_loop import SdkLoopError, install
from handler.settings import load_settings

SDK_LOG_LEVELS = {"DEBUG": "DEBUG", "INFO": "INFO", "WARNING": "WARN", "ERROR": "ERROR"}


def _exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    # SIGTERM's default action ends the process at once, skipping atexit: the engine
    # (its own process group) would outlive the worker. Leaving by SystemExit runs it.
    raise SystemExit(128 + signum)


def main() -> int:
    fast_cpu_probe()  # before the SDK's import-time CPU probe runs: see handler.sdk_boot
    import runpod
    from runpod.serverless.modules.rp_logger import RunPodLogger

    try:
        install(os.environ)  # the SDK's job loop without its polling sleeps: see handler.sdk_loop
    except SdkLoopError as exc:
        print(f"worker cannot start: {exc}", file=sys.stderr)
        return 2
    try:
        settings = load_settings(os.environ)
        logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        app = create_app(settings, handle_sigterm=True)
    except ConfigError as exc:
        print(f"worker cannot start: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _exit_on_signal)
    if "RUNPOD_LOG_LEVEL" not in os.environ and "RUNPOD_DEBUG_LEVEL" not in os.environ:
        # the SDK logs at DEBUG unless told otherwise: several JSON lines per job, CPU taken from the engine
        RunPodLogger().set_level(SDK_LOG_LEVELS[settings.log_level])
    on_runpod = bool(os.environ.get("RUNPOD_WEBHOOK_GET_JOB")) and "--rp_serve_api" not in sys.argv
    config: dict[str, Any] = {
        "handler": app.generator_handler if on_runpod else app.handler,
        "concurrency_modifier": app.concurrency_modifier,
        "return_aggregate_stream": True,
    }
    app.sdk_config = config  # the SDK keeps this dict: the app asks for a refresh through it
    runpod.serverless.start(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
