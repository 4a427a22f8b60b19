"""Starting the runpod SDK fast: its import-time CPU probe, answered from /proc.

Importing `runpod.serverless` runs `cpuinfo.get_cpu_info()` once, for a debug
line's processor name: py-cpuinfo answers by starting a second Python
interpreter, 1.1 s of a worker's 1.6 s start here (`python -X importtime -c
"import runpod"`). The worker needs only that name, so before the SDK is imported
`fast_cpu_probe` makes py-cpuinfo answer from /proc/cpuinfo's "model name" in
this process. The SDK's files are untouched; any other caller of
`get_cpu_info` in the worker process gets the same short answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PROC_CPUINFO = Path("/proc/cpuinfo")


def processor_name(cpuinfo_text: str) -> str:
    """The first "model name" of /proc/cpuinfo's text ("" when absent: some ARM kernels)."""
    for line in cpuinfo_text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    return ""


def fast_cpu_probe() -> None:
    """Make py-cpuinfo answer in-process; call before importing runpod."""
    import cpuinfo

    try:
        name = processor_name(PROC_CPUINFO.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        name = ""
    answer = {"brand_raw": name or "unknown processor"}

    def get_cpu_info() -> dict[str, Any]:
        return dict(answer)

    cpuinfo.get_cpu_info = get_cpu_info
