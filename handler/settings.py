"""Worker settings: read once from the environment into one typed, frozen object, and its groups.

`load_settings(env)` is a pure function of a mapping (``os.environ`` by default,
passed in by the entry point); no module reads the environment at import time.
Every field is documented in the README's settings table (a test keeps the two
in step): the variable name is the field name in upper case.

Each class receives only its group (`settings.engine`, `.cache`, `.budget`, `.jobs`, `.model`,
`.platform`): frozen views with the same names, so a class never reads a setting of another
concern; the app (handler.app) is the one place that holds them all.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.contract import DEFAULT_MAX_TOKENS, JobLimits
from handler.compat import translate
from handler.compat_rules import LoraModule, parse_lora_modules
from handler.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger(__name__)
REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")  # +cluster: Redis Cluster


class Settings(BaseModel):
    """All settings of the worker. Defaults are for a local CPU run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # --- model -------------------------------------------------------------
    model_name: str = Field("", description="Model folder or hub id; empty: the baked manifest, else EMBEDDED_MODEL.")
    model_revision: str = Field("", description="Model revision (commit) for the cache key and manifest.")
    quantization: str = Field("", description="vLLM quantization (`awq`, ...); empty: as the model's config says.")
    embedded_model: Literal["smollm2", "tiny"] = Field(
        "smollm2", description="Which locally built model serves when nothing else is configured."
    )
    models_dir: Path = Field(REPO_ROOT / "models", description="Folder holding the locally built models.")
    model_manifest: Path = Field(
        Path("/models/manifest.json"), description="Manifest written by `builder bake`; used when present."
    )
    model_cache_dir: Path = Field(
        Path("/runpod-volume/huggingface-cache/hub"),
        description="RunPod's model cache (Hugging Face layout); a hub MODEL_NAME found there is served from it.",
    )
    network_volume_dir: Path = Field(
        Path("/runpod-volume/models"), description="Model folder on a RunPod network volume; preferred when present."
    )

    # --- engine ------------------------------------------------------------
    engine_command: str = Field("", description="Command that starts vLLM's OpenAI server; empty: auto-detect.")
    engine_device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Engine device; auto: cuda if a GPU is visible."
    )
    engine_dtype: str = Field("", description="vLLM --dtype; empty: float32 on CPU, auto on GPU.")
    engine_host: str = Field("127.0.0.1", description="Address the engine listens on.")
    engine_port: int = Field(0, ge=0, le=65535, description="Engine port; 0 picks a free one at each start.")
    max_model_len: int = Field(2048, ge=16, description="vLLM --max-model-len.")
    gpu_memory_utilization: float = Field(0.90, gt=0, le=1, description="vLLM --gpu-memory-utilization (GPU only).")
    kv_cache_memory_bytes: int = Field(
        0, ge=0, description="vLLM --kv-cache-memory-bytes; 0: 1 GiB on CPU, vLLM's choice on GPU."
    )
    max_num_seqs: int = Field(64, ge=1, description="vLLM --max-num-seqs: sequences batched at once.")
    tensor_parallel_size: int = Field(1, ge=1, description="vLLM --tensor-parallel-size for multi-GPU workers.")
    # worker-vllm's engine settings under its names (README: Coming from worker-vllm; handler.compat)
    trust_remote_code: bool = Field(False, description="vLLM --trust-remote-code: run the model repository's code.")
    custom_chat_template: str = Field(
        "", description="vLLM --chat-template: a Jinja chat template, or a file holding one; empty: the model's."
    )
    tokenizer_name: str = Field("", description="vLLM --tokenizer: a hub id or folder; empty: the model's tokenizer.")
    enable_prefix_caching: Literal["auto", "true", "false"] = Field(
        "auto", description="vLLM --enable-prefix-caching (true) or --no-enable-prefix-caching (false); auto: vLLM's."
    )
    kv_cache_dtype: str = Field("auto", description="vLLM --kv-cache-dtype (`fp8`, ...); auto: vLLM's choice.")
    max_num_batched_tokens: int = Field(0, ge=0, description="vLLM --max-num-batched-tokens; 0: vLLM's choice.")
    enable_auto_tool_choice: bool = Field(False, description="vLLM --enable-auto-tool-choice; needs TOOL_CALL_PARSER.")
    tool_call_parser: str = Field("", description="vLLM --tool-call-parser (`hermes`, `llama3_json`, ...).")
    reasoning_parser: str = Field("", description="vLLM --reasoning-parser (`deepseek_r1`, `qwen3`, ...).")
    speculative_config: str = Field(
        "", description="vLLM --speculative-config, a JSON object; empty: no speculative decoding."
    )
    enable_lora: bool = Field(False, description="vLLM --enable-lora (LORA_MODULES turns it on too).")
    lora_modules: str = Field(
        "",
        description='vLLM --lora-modules: LoRA adapters as a JSON list of {"name", "path", "base_model_name"}, or '
        "`name=path` words.",
    )
    engine_extra_args: str = Field("", description="Extra vLLM arguments, shell-quoted.")
    engine_cpu_threads: int = Field(0, ge=0, description="CPU engine: OpenMP threads; 0: all cores.")
    engine_start_timeout: float = Field(
        600.0,
        gt=0,
        description="Seconds an engine start may take before it is stopped; the budget reserves all of it for a start.",
    )
    engine_request_timeout: float = Field(600.0, gt=0, description="Seconds one engine request may take.")
    engine_max_start_failures: int = Field(
        3, ge=1, description="Consecutive start failures before the worker asks RunPod to replace it."
    )
    engine_compile: Literal["auto", "compiled", "eager"] = Field(
        "auto",
        description="compiled: vLLM's torch.compile (and CUDA graphs on GPU), from the kept cache when there is "
        "one; eager: --enforce-eager, nothing compiled; auto: eager on CPU (the cheapest cold start for the same "
        "serving speed there, README), compiled on GPU.",
    )
    engine_cache_dir: str = Field(
        "",
        description="vLLM's cache folder (compiled graphs; torch's inductor and Triton caches go inside it); "
        "empty: the model's own `vllm-cache` folder when it has one (`builder warm`), else vLLM's default.",
    )
    engine_start: Literal["auto", "lazy", "boot", "background"] = Field(
        "auto",
        description="When the engine starts: on the first cache miss (lazy), before the worker takes jobs (boot), "
        "or at once beside the jobs (background); auto: lazy where RunPod bills start-up (BILL_INITIALIZING), "
        "else boot, whose engine start is then unbilled.",
    )
    cold_concurrency: int = Field(
        4, ge=1, description="Jobs a worker takes at once while its engine is cold (lazy, background)."
    )
    idle_timeout: float = Field(
        0.0, ge=0, description="Stop the engine after this many idle seconds; 0: never (see README)."
    )

    # --- jobs --------------------------------------------------------------
    max_concurrency: int = Field(64, ge=1, description="Jobs one worker takes at once (runpod concurrency_modifier).")
    max_batch_size: int = Field(64, ge=1, description="Most items in one batched job.")
    max_prompt_chars: int = Field(
        32_000,
        ge=1,
        description="Most text that reaches the prompt (messages, tools, documents; every prompt of a list), in "
        "characters.",
    )
    max_tokens_limit: int = Field(2048, ge=1, description="Largest `max_tokens` a job may ask for.")
    default_max_tokens: int = Field(DEFAULT_MAX_TOKENS, ge=1, description="`max_tokens` for jobs that give none.")

    # --- OpenAI routes (worker-vllm's names) -------------------------------------------
    raw_openai_output: bool = Field(
        True,
        description="A streamed OpenAI-route job yields server-sent-event strings (`data: {chunk}`, then "
        "`data: [DONE]`), which RunPod's /openai/v1 route relays; false: lists of chunk objects.",
    )
    openai_served_model_name_override: str = Field(
        "",
        description="Another name OpenAI requests may give as `model` (listed first by /v1/models); the model's "
        "own name is accepted too.",
    )

    # --- cache -------------------------------------------------------------
    redis_url: str = Field(
        "",
        description="Redis for the shared cache and budget: redis://, rediss:// (TLS), unix://, or "
        "redis+cluster:// / rediss+cluster:// (any node of a Redis Cluster); empty: in-process store.",
    )
    cache_enabled: bool = Field(True, description="Answer deterministic requests from the cache.")
    cache_namespace: str = Field("default", description="Key prefix isolating deployments.")
    cache_ttl: int = Field(86_400, ge=1, description="Seconds a cached answer lives.")
    cache_max_bytes: int = Field(1_000_000, ge=1, description="Largest answer stored in the cache.")
    cache_lock_ttl: float = Field(
        120.0, gt=0, description="Seconds a single-flight lock lives before a waiter takes over."
    )

    # --- budget ------------------------------------------------------------
    gpu_type: str = Field(
        "",
        description="RunPod GPU id priced from the price table (per GPU, times TENSOR_PARALLEL_SIZE) when "
        "nvidia-smi names no GPU the table knows (a GPU it names wins).",
    )
    gpu_hourly_rate: float = Field(
        0.0,
        ge=0,
        description="USD per worker-hour, all its GPUs (not multiplied by TENSOR_PARALLEL_SIZE); wins over the "
        "price table; 0: the detected GPU's or GPU_TYPE's price.",
    )
    daily_budget_usd: float = Field(0.0, ge=0, description="Shared daily budget; 0: no limit.")
    budget_timezone: str = Field("UTC", description="Time zone of the budget day.")
    budget_alert_threshold: float = Field(0.8, gt=0, le=1, description="Fraction of the budget that fires the alert.")
    budget_alert_webhook: str = Field("", description="URL POSTed once per day when the alert fires.")
    budget_fail_mode: Literal["closed", "open"] = Field(
        "closed", description="When Redis is down: refuse engine jobs (closed) or serve and reconcile (open)."
    )
    budget_scale_to_zero: Literal["auto", "true", "false"] = Field(
        "auto",
        description="Past the limit, set the endpoint's workers to 0 so RunPod starts no more (`python -m "
        "handler.resume` restores them the next budget day); auto: on when RUNPOD_API_KEY and RUNPOD_ENDPOINT_ID "
        "are set.",
    )
    budget_namespace: str = Field(
        "default",
        description="Key prefix of the budget, apart from CACHE_NAMESPACE (rotating the cache keeps the spend).",
    )
    budget_heartbeat_seconds: float = Field(
        5.0, gt=0, description="Seconds between settlements of the worker's overhead (boot, engine start, idle)."
    )
    seconds_per_token: float = Field(
        0.05, gt=0, description="Starting pace for worst-case reservations, until the worker has measured its own."
    )
    max_cost_usd_per_job: float = Field(
        0.0, ge=0, description="Default per-job cost cap (a job's `max_cost_usd`); 0: none."
    )

    # --- the endpoint (what RunPod bills; the worker cannot read these from RunPod) -------
    worker_boot_seconds: float = Field(
        2.0, ge=0, description="Container start billed before Python runs (counted as boot overhead)."
    )
    bill_initializing: bool = Field(
        True, description="RunPod bills a worker's start-up (boot, and the engine when started at boot)."
    )
    endpoint_idle_timeout: float = Field(
        5.0, ge=0, description="The endpoint's idle timeout: billed idle seconds after the last job."
    )
    endpoint_workers_max: int = Field(
        3,
        ge=1,
        description="The endpoint's workers max: the budget keeps room for that many worker starts; with "
        "BUDGET_FAIL_MODE=open each spends its share.",
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Worker log level.")

    # --- RunPod ------------------------------------------------------------
    runpod_endpoint_id: str = Field("", description="This endpoint's id (set by RunPod).")
    runpod_pod_id: str = Field("", description="This worker's id (set by RunPod); names its share of the budget.")
    runpod_api_key: str = Field("", description="API key for scale-to-zero calls.")

    @field_validator("budget_scale_to_zero", mode="before")
    @classmethod
    def _scale_to_zero_words(cls, value: object) -> object:
        words = {"1": "true", "yes": "true", "on": "true", "0": "false", "no": "false", "off": "false"}
        return words.get(str(value).strip().lower(), str(value).strip().lower())

    @property
    def scale_to_zero_enabled(self) -> bool:
        """BUDGET_SCALE_TO_ZERO resolved: auto is on with an API key and an endpoint id."""
        if self.budget_scale_to_zero == "auto":
            return bool(self.runpod_api_key and self.runpod_endpoint_id and self.daily_budget_usd > 0)
        return self.budget_scale_to_zero == "true"

    @field_validator("enable_prefix_caching", mode="before")
    @classmethod
    def _switch_words(cls, value: object) -> object:
        words = {"1": "true", "yes": "true", "on": "true", "0": "false", "no": "false", "off": "false"}
        return words.get(str(value).strip().lower(), str(value).strip().lower())

    @field_validator("speculative_config")
    @classmethod
    def _speculative_json(cls, value: str) -> str:
        if value and not isinstance(json.loads(value), dict):  # a JSONDecodeError is a ValueError too
            raise ValueError("expected a JSON object")
        return value

    @field_validator("lora_modules")
    @classmethod
    def _lora_modules_parse(cls, value: str) -> str:
        parse_lora_modules(value)
        return value

    @model_validator(mode="after")
    def _tool_choice_needs_a_parser(self) -> Settings:
        if self.enable_auto_tool_choice and not self.tool_call_parser:
            raise ValueError("ENABLE_AUTO_TOOL_CHOICE needs TOOL_CALL_PARSER (vLLM refuses to start without it)")
        return self

    @field_validator("engine_extra_args")
    @classmethod
    def _extra_args_parse(cls, value: str) -> str:
        shlex.split(value)
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url_usable(cls, value: str) -> str:
        """Checked at start-up: a bad URL stops the worker with a message, not every job later."""
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in REDIS_SCHEMES:
            raise ValueError(f"scheme {parts.scheme!r} is not one of {', '.join(s + '://' for s in REDIS_SCHEMES)}")
        try:
            parts.port  # noqa: B018 (urlsplit checks the port only when asked)
        except ValueError as exc:
            raise ValueError(f"bad port in {parts.netloc!r}") from exc
        if parts.scheme == "unix" and not parts.path:
            raise ValueError("unix:// needs the socket's path")
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError("no host")
        return value

    @property
    def model(self) -> ModelSettings:
        return _group(self, ModelSettings)

    @property
    def engine(self) -> EngineSettings:
        return _group(self, EngineSettings)

    @property
    def cache(self) -> CacheSettings:
        return _group(self, CacheSettings)

    @property
    def budget(self) -> BudgetSettings:
        return _group(self, BudgetSettings)

    @property
    def jobs(self) -> JobSettings:
        return _group(self, JobSettings)

    @property
    def platform(self) -> PlatformSettings:
        return _group(self, PlatformSettings)

    @property
    def limits(self) -> JobLimits:
        """The job contract's limits (core.contract)."""
        return self.jobs.limits


# --- groups: each class receives only its own (same names as the Settings fields) -------


@dataclass(frozen=True)
class ModelSettings:
    """Which model to serve (handler.model)."""

    model_name: str
    model_revision: str
    quantization: str
    embedded_model: Literal["smollm2", "tiny"]
    models_dir: Path
    model_manifest: Path
    model_cache_dir: Path
    network_volume_dir: Path


@dataclass(frozen=True)
class EngineSettings:
    """How the vLLM child process is started and called (handler.engine, handler.engine_command)."""

    engine_command: str
    engine_device: Literal["auto", "cpu", "cuda"]
    engine_dtype: str
    engine_host: str
    engine_port: int
    max_model_len: int
    gpu_memory_utilization: float
    kv_cache_memory_bytes: int
    max_num_seqs: int
    tensor_parallel_size: int
    trust_remote_code: bool
    custom_chat_template: str
    tokenizer_name: str
    enable_prefix_caching: Literal["auto", "true", "false"]
    kv_cache_dtype: str
    max_num_batched_tokens: int
    enable_auto_tool_choice: bool
    tool_call_parser: str
    reasoning_parser: str
    speculative_config: str
    enable_lora: bool
    lora_modules: str
    engine_extra_args: str
    engine_cpu_threads: int
    engine_start_timeout: float
    engine_request_timeout: float
    engine_max_start_failures: int
    engine_compile: Literal["auto", "compiled", "eager"]
    engine_cache_dir: str
    idle_timeout: float

    @property
    def extra_args(self) -> list[str]:
        return shlex.split(self.engine_extra_args)

    @property
    def lora_adapters(self) -> tuple[LoraModule, ...]:
        """LORA_MODULES parsed (checked at start)."""
        return parse_lora_modules(self.lora_modules)


@dataclass(frozen=True)
class CacheSettings:
    """The response cache (handler.cache); its statistics' day is the budget's day."""

    cache_enabled: bool
    cache_namespace: str
    cache_ttl: int
    cache_max_bytes: int
    cache_lock_ttl: float
    budget_timezone: str


@dataclass(frozen=True)
class BudgetSettings:
    """The daily budget and the worker's price (handler.budget, handler.rates)."""

    gpu_type: str
    gpu_hourly_rate: float
    tensor_parallel_size: int
    daily_budget_usd: float
    budget_timezone: str
    budget_alert_threshold: float
    budget_alert_webhook: str
    budget_fail_mode: Literal["closed", "open"]
    budget_scale_to_zero: Literal["auto", "true", "false"]
    budget_namespace: str
    budget_heartbeat_seconds: float
    endpoint_workers_max: int
    runpod_endpoint_id: str


@dataclass(frozen=True)
class JobSettings:
    """What the worker needs to serve a job and bound its cost (handler.worker)."""

    default_max_tokens: int
    max_tokens_limit: int
    max_prompt_chars: int
    max_batch_size: int
    max_cost_usd_per_job: float
    raw_openai_output: bool
    openai_served_model_name_override: str
    max_model_len: int
    seconds_per_token: float
    engine_start_timeout: float
    budget_heartbeat_seconds: float
    bill_initializing: bool
    endpoint_idle_timeout: float

    @property
    def limits(self) -> JobLimits:
        """The job contract's limits (core.contract)."""
        return JobLimits(
            default_max_tokens=self.default_max_tokens,
            max_tokens_limit=self.max_tokens_limit,
            max_prompt_chars=self.max_prompt_chars,
            max_batch_size=self.max_batch_size,
            max_cost_usd_per_job=self.max_cost_usd_per_job,
        )


@dataclass(frozen=True)
class PlatformSettings:
    """The endpoint as RunPod runs it: how start-up is billed, concurrency, ids (handler.app)."""

    worker_boot_seconds: float
    bill_initializing: bool
    endpoint_idle_timeout: float
    endpoint_workers_max: int
    max_concurrency: int
    cold_concurrency: int
    engine_start: Literal["auto", "lazy", "boot", "background"]
    runpod_endpoint_id: str
    runpod_pod_id: str
    runpod_api_key: str

    @property
    def engine_start_mode(self) -> Literal["lazy", "boot", "background"]:
        """ENGINE_START with `auto` resolved for the bill's start-up rule."""
        if self.engine_start == "auto":
            return "lazy" if self.bill_initializing else "boot"
        return self.engine_start


G = TypeVar("G")


def _group(settings: Settings, group: type[G]) -> G:
    return group(**{f.name: getattr(settings, f.name) for f in fields(group)})  # type: ignore[arg-type]


def env_name(field: str) -> str:
    return field.upper()


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build settings from a mapping of environment variables (pure, but for a warning naming each
    worker-vllm variable that has no effect here)."""
    env = os.environ if env is None else env
    compat = translate(env)  # worker-vllm's variables: mapped, passed to vLLM, or refused (handler.compat)
    if compat.refusals:
        raise ConfigError(
            "worker-vllm settings this worker cannot honour (README: Coming from worker-vllm): "
            + "; ".join(compat.refusals),
            field=compat.refusals[0].split(":", 1)[0],
        )
    values = {name: env[env_name(name)] for name in Settings.model_fields if env_name(name) in env}
    values = {name: value for name, value in values.items() if name not in compat.unset} | compat.settings
    try:
        settings = Settings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{env_name(str(err['loc'][0])) if err['loc'] else '?'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from exc
    for note in compat.notes:
        log.warning(note)
    return settings
