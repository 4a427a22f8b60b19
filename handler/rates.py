"""What one worker costs per hour.

GPU_HOURLY_RATE, when set, is the whole worker's price (USD per worker-hour, all
its GPUs: what RunPod bills for it) and is taken as it is. Otherwise the worker
is priced from the price table, whose rates are per GPU (RunPod bills each GPU a
worker holds), times TENSOR_PARALLEL_SIZE. The GPU priced is the one this worker
really got, as `nvidia-smi` names it, when the table knows it: a pool's second
choice (a 4090 on a worker asked for as an A5000) is priced as what it is, and a
GPU_TYPE naming another pool is logged as a mismatch. GPU_TYPE is the fallback
when no GPU is detected (CPU, no nvidia-smi) or the table does not know the
detected one. With none of these the worker is priced at 0 (nothing priced).
"""

from __future__ import annotations

import logging
import shutil
import subprocess

from core.errors import PriceTableError
from handler.errors import ConfigError
from handler.settings import BudgetSettings

log = logging.getLogger(__name__)

NVIDIA_SMI_TIMEOUT_S = 10.0

_warned: set[tuple[str, ...]] = set()  # warnings already logged in this process (each is logged once)


def _warn_once(key: tuple[str, ...], message: str, *args: object) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(message, *args)


def detected_gpu_name() -> str:
    """The first GPU's name as `nvidia-smi` prints it; "" without a GPU or nvidia-smi."""
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return ""
    try:
        done = subprocess.run(
            [binary, "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("nvidia-smi failed (%s): the GPU is not priced from its name", exc)
        return ""
    lines = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    return lines[0] if done.returncode == 0 and lines else ""


def _pool(gpu: str, field: str) -> tuple[str, float]:
    """The price-table pool of `gpu` and the USD per hour of one of its GPUs; ConfigError on `field` if unknown."""
    from core.prices import load_prices  # its models take ~10 ms to build: only a worker priced by name pays it

    try:
        entry = load_prices().gpu(gpu)
    except PriceTableError as exc:
        raise ConfigError(f"{field}: {exc}", field=field) from exc
    return entry.id, entry.hourly()


def gpu_hourly_rate(settings: BudgetSettings, detected: str | None = None) -> float:
    """USD per hour of ONE of the worker's GPUs (`detected`: the nvidia-smi name; None: ask it).

    With GPU_HOURLY_RATE set, its share per GPU; else the price table's rate of the detected
    GPU, else of GPU_TYPE; else 0 (a ConfigError if DAILY_BUDGET_USD needs a rate).
    """
    if settings.gpu_hourly_rate > 0:
        return settings.gpu_hourly_rate / settings.tensor_parallel_size
    # an unknown GPU_TYPE is a configuration error wherever the worker runs, detected GPU or not
    configured = _pool(settings.gpu_type, "GPU_TYPE") if settings.gpu_type else None
    name = detected_gpu_name() if detected is None else detected
    if name:
        try:
            pool, rate = _pool(name, "GPU_TYPE")
        except ConfigError:
            if configured is not None:
                _warn_once(
                    ("unknown", name, settings.gpu_type),
                    "GPU %r (from nvidia-smi) is not in the price table: priced as GPU_TYPE %r",
                    name,
                    settings.gpu_type,
                )
                return configured[1]
            if settings.daily_budget_usd > 0:
                raise ConfigError(
                    f"this worker's GPU ({name!r}, from nvidia-smi) is not in the price table: set GPU_HOURLY_RATE",
                    field="GPU_HOURLY_RATE",
                ) from None
            _warn_once(("unpriced", name), "GPU %r is not in the price table: costs are reported as 0", name)
            return 0.0
        if configured is not None and configured[0] != pool:
            _warn_once(
                ("mismatch", name, settings.gpu_type),
                "GPU_TYPE %r (pool %s) is not the GPU this worker got: nvidia-smi names %r (pool %s), "
                "which is priced instead",
                settings.gpu_type,
                configured[0],
                name,
                pool,
            )
        return rate
    if configured is not None:
        return configured[1]
    if settings.daily_budget_usd > 0:
        raise ConfigError(
            "DAILY_BUDGET_USD is set but no hourly rate is known: set GPU_HOURLY_RATE or GPU_TYPE",
            field="GPU_HOURLY_RATE",
        )
    return 0.0


def hourly_rate(settings: BudgetSettings, detected: str | None = None) -> float:
    """USD per worker-hour: GPU_HOURLY_RATE as it is, else TENSOR_PARALLEL_SIZE GPUs at the table's price."""
    if settings.gpu_hourly_rate > 0:
        return settings.gpu_hourly_rate
    return gpu_hourly_rate(settings, detected) * settings.tensor_parallel_size
