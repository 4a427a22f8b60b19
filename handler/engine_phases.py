"""The phases of one engine start, read from vLLM's own log lines (pure).

vLLM 0.32 logs, in order (CPU and GPU builds alike):

    Starting to load model <path>...                       imports and process set-up are over
    Model loading took <x> GiB memory and <s> seconds      weights (also "Loading weights took <s> seconds")
    torch.compile took <s> s in total                      compile (absent with --enforce-eager)
    init engine (profile, create kv cache, warmup model) took <s> s [(compilation: <s> s)]

then the API server starts and /health answers. `StartPhases` takes the lines
with the seconds since the engine's process was spawned, and splits the whole
start into: process and imports, weights, compile, KV cache sizing and warm-up,
and the server's start to health (what remains).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LOADING = re.compile(r"Starting to load model")
_WEIGHTS = re.compile(r"(?:Model loading took .*? and ([\d.]+) seconds|Loading weights took ([\d.]+) seconds)")
_COMPILE = re.compile(r"torch\.compile took ([\d.]+) s in total")
_INIT = re.compile(
    r"init engine \(profile, create kv cache, warmup model\) took ([\d.]+) s(?: \(compilation: ([\d.]+) s)?"
)


@dataclass
class StartPhases:
    """Fed with (seconds since spawn, log line) while the engine starts."""

    loading_at: float | None = None
    init_at: float | None = None
    weights_s: float | None = None
    compile_s: float | None = None
    init_s: float | None = None

    def feed(self, at: float, line: str) -> None:
        if self.loading_at is None and _LOADING.search(line):
            self.loading_at = at
        if (m := _WEIGHTS.search(line)) is not None:
            self.weights_s = float(m.group(1) or m.group(2))
        if (m := _COMPILE.search(line)) is not None:
            self.compile_s = float(m.group(1))
        if (m := _INIT.search(line)) is not None:
            self.init_at, self.init_s = at, float(m.group(1))
            if m.group(2) is not None and self.compile_s is None:
                self.compile_s = float(m.group(2))

    def report(self, total_s: float) -> dict[str, float]:
        """Seconds by phase (only those the log told), plus the total to /health."""
        out: dict[str, float] = {}
        if self.loading_at is not None:
            out["process_and_imports_s"] = self.loading_at
        if self.weights_s is not None:
            out["weights_s"] = self.weights_s
        compile_s = self.compile_s or 0.0
        if self.compile_s is not None:
            out["compile_s"] = self.compile_s
        if self.init_s is not None:
            out["kv_cache_and_warmup_s"] = max(0.0, self.init_s - compile_s)
        if self.init_at is not None:
            out["server_to_health_s"] = max(0.0, total_s - self.init_at)
        out["total_s"] = total_s
        return {k: round(v, 2) for k, v in out.items()}
