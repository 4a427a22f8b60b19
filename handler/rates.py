"""What one worker costs per hour: the GPU's price times the GPUs it holds.

GPU_HOURLY_RATE wins; else GPU_TYPE's price from the price table; else the GPU
this worker really got, as `nvidia-smi` names it (a pool's second choice is
priced as what it is); else 0 (nothing priced). A worker holds
TENSOR_PARALLEL_SIZE GPUs and RunPod bills each.
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


def _table_rate(gpu: str, field: str) -> float:
    from core.prices import load_prices  # its models take ~10 ms to build: only a worker priced by name pays it

    try:
        return load_prices().hourly_rate(gpu)
    except PriceTableError as exc:
        raise ConfigError(f"{field}: {exc}", field=field) from exc


def gpu_hourly_rate(settings: BudgetSettings, detected: str | None = None) -> float:
    """USD per hour of ONE of the worker's GPUs (`detected`: the nvidia-smi name; None: ask it)."""
    if settings.gpu_hourly_rate > 0:
        return settings.gpu_hourly_rate
    if settings.gpu_type:
        return _table_rate(settings.gpu_type, "GPU_TYPE")
    name = detected_gpu_name() if detected is None else detected
    if name:
        try:
            return _table_rate(name, "GPU_TYPE")
        except ConfigError:
            if settings.daily_budget_usd > 0:
                raise ConfigError(
                    f"this worker's GPU ({name!r}, from nvidia-smi) is not in the price table: set GPU_HOURLY_RATE",
                    field="GPU_HOURLY_RATE",
                ) from None
            log.warning("GPU %r is not in the price table: costs are reported as 0", name)
            return 0.0
    if settings.daily_budget_usd > 0:
        raise ConfigError(
            "DAILY_BUDGET_USD is set but no hourly rate is known: set GPU_HOURLY_RATE or GPU_TYPE",
            field="GPU_HOURLY_RATE",
        )
    return 0.0


def hourly_rate(settings: BudgetSettings, detected: str | None = None) -> float:
    """USD per worker hour: every GPU the worker holds (TENSOR_PARALLEL_SIZE) at its price."""
    return gpu_hourly_rate(settings, detected) * settings.tensor_parallel_size
