"""Replay configurations: a worker's settings plus its endpoint's (pure).

    baseline  the usual worker's shape (the popular RunPod vLLM worker): the engine
              started before the worker takes a job, no cache, vLLM's default
              start-up (compiled, no compile cache kept from an earlier container,
              and on CPU vLLM's own process layout)
    frugal    this worker's defaults

`--config NAME KEY=VALUE ...` adds or changes one: NAME is a preset to change or a
new name (starting from `frugal`, or from the preset given as `from=baseline`);
UPPER_CASE keys are worker settings (environment variables, e.g.
`ENGINE_START=background`); lower_case keys are endpoint settings (ENDPOINT_KEYS).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from client.errors import TraceError

ENDPOINT_KEYS: dict[str, type] = {
    "workers_min": int,
    "workers_max": int,
    "idle_timeout": float,
    "scaler_type": str,
    "scaler_value": float,
    "container_start_delay": float,
}
ENDPOINT_DEFAULTS: dict[str, Any] = {  # RunPod's endpoint defaults, the container start WORKER_BOOT_SECONDS assumes
    "workers_min": 0,
    "workers_max": 3,
    "idle_timeout": 5.0,
    "scaler_type": "QUEUE_DELAY",
    "scaler_value": 4.0,
    "container_start_delay": 2.0,
}
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
_ENV_KEY = re.compile(r"^[A-Z][A-Z0-9_]*$")


@dataclass(frozen=True)
class ReplayConfig:
    name: str
    worker_env: dict[str, str] = field(default_factory=dict)
    endpoint: dict[str, Any] = field(default_factory=lambda: dict(ENDPOINT_DEFAULTS))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "worker_env": dict(self.worker_env), "endpoint": dict(self.endpoint)}


PRESETS: dict[str, ReplayConfig] = {
    "baseline": ReplayConfig(
        "baseline",
        {
            "ENGINE_START": "boot",
            "CACHE_ENABLED": "false",
            "VLLM_DISABLE_COMPILE_CACHE": "1",
            "ENGINE_COMPILE": "compiled",  # vLLM's default start-up and, on CPU, its three processes
            "ENGINE_EXTRA_ARGS": "--distributed-executor-backend mp",
        },
    ),
    "frugal": ReplayConfig("frugal"),
}


def _value(key: str, raw: str) -> Any:
    kind = ENDPOINT_KEYS[key]
    try:
        return kind(raw)
    except ValueError:
        raise TraceError(f"config key {key}: {raw!r} is not a {kind.__name__}") from None


def build_config(name: str, assignments: Sequence[str], presets: Mapping[str, ReplayConfig] = PRESETS) -> ReplayConfig:
    """One `--config NAME KEY=VALUE ...`."""
    if not _NAME.match(name):
        raise TraceError(f"config name {name!r}: use lower-case letters, digits and '-' (at most 40)")
    pairs: list[tuple[str, str]] = []
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise TraceError(f"config {name}: {item!r} is not KEY=VALUE")
        pairs.append((key, raw))
    start = next((raw for key, raw in pairs if key == "from"), None)
    base_name = start or (name if name in presets else "frugal")
    if base_name not in presets:
        raise TraceError(f"config {name}: from={base_name!r} is not one of {', '.join(presets)}")
    base = presets[base_name]
    env, endpoint = dict(base.worker_env), dict(base.endpoint)
    for key, raw in pairs:
        if key == "from":
            continue
        if key in ENDPOINT_KEYS:
            endpoint[key] = _value(key, raw)
        elif _ENV_KEY.match(key):
            env[key] = raw
        else:
            known = ", ".join(ENDPOINT_KEYS)
            raise TraceError(f"config {name}: unknown key {key!r} (worker settings are UPPER_CASE; endpoint: {known})")
    return replace(base, name=name, worker_env=env, endpoint=endpoint)


def build_configs(specs: Sequence[Sequence[str]]) -> list[ReplayConfig]:
    """Every `--config` given (each: NAME then KEY=VALUE ...), or baseline and frugal by default."""
    if not specs:
        return [PRESETS["baseline"], PRESETS["frugal"]]
    configs = [build_config(spec[0], spec[1:]) for spec in specs]
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise TraceError(f"config names repeat: {', '.join(names)}")
    return configs
