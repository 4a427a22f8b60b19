"""worker-vllm's variables by name, and what each does here (the rules: handler.compat_rules).

The vLLM flags worker-vllm passes by their own names, and that need nothing more than that,
are in handler.compat_flags.
"""

from __future__ import annotations

from handler.compat_rules import (
    FALSE,
    Var,
    device,
    enforce_eager,
    env,
    limit_mm,
    mapped,
    noted,
    refused,
    same,
    to_flag,
    to_part,
    to_setting,
    to_switch,
    vllm_extra_args,
    worker_use_ray,
)

GONE = "vLLM 0.32 has no such setting"
SPEC = "assembled into SPECULATIVE_CONFIG as worker-vllm did until 2026-07"
GUIDED = "assembled into vLLM's --structured-outputs-config"
LOOPBACK = "the worker talks to its engine over plain HTTP on loopback (RunPod's endpoint is the TLS edge); unset it"


NAMED: tuple[Var, ...] = (
    # --- the same name, the same meaning (settings of this worker) -----------------------------
    same("MODEL_NAME", "a hub id or a folder", example="org/model"),
    same("MODEL_REVISION", example="abc123"),
    same("QUANTIZATION", "`None`: as the model's config says", example="awq"),
    same("MAX_MODEL_LEN", "unset, `auto` or `0`: this worker's default", example="4096", unset=("auto", "0")),
    same("GPU_MEMORY_UTILIZATION", "this worker's default is 0.90 (worker-vllm: 0.95)", example="0.8"),
    same("MAX_NUM_SEQS", "this worker's default is 64 (worker-vllm: 256)", example="32"),
    same("TENSOR_PARALLEL_SIZE", example="2"),
    same("KV_CACHE_MEMORY_BYTES", example="1000000000"),
    same("MAX_CONCURRENCY", "this worker's default is 64 (worker-vllm: 30)", example="8"),
    same("TRUST_REMOTE_CODE", example="true"),
    same("CUSTOM_CHAT_TEMPLATE", "a Jinja template, or a file holding one", example="{{ messages[0].content }}"),
    same("TOKENIZER_NAME", example="org/tokenizer"),
    same("ENABLE_PREFIX_CACHING", "unset: vLLM's default (on)", example="false"),
    same("KV_CACHE_DTYPE", example="fp8"),
    same("MAX_NUM_BATCHED_TOKENS", "`0`: vLLM's choice", example="8192"),
    same("ENABLE_AUTO_TOOL_CHOICE", example="true"),
    same("TOOL_CALL_PARSER", example="hermes"),
    same("REASONING_PARSER", example="deepseek_r1"),
    same("SPECULATIVE_CONFIG", "a JSON object", example='{"method": "ngram", "num_speculative_tokens": 3}'),
    same("ENABLE_LORA", example="true"),
    same(
        "LORA_MODULES",
        "a JSON list of {name, path, base_model_name}, or `name=path` words; gives --enable-lora",
        example='[{"name": "ad", "path": "/lora/ad"}]',
    ),
    same("RAW_OPENAI_OUTPUT", example="false"),
    same("OPENAI_SERVED_MODEL_NAME_OVERRIDE", example="my-model"),
    # --- mapped onto this worker's settings --------------------------------------------------------
    mapped(
        "DTYPE",
        "ENGINE_DTYPE",
        "`auto`: this worker's choice (float32 on CPU, vLLM's auto on GPU)",
        to_setting("engine_dtype"),
        example="half",
        unset=("auto",),
    ),
    mapped(
        "ENFORCE_EAGER",
        "ENGINE_COMPILE",
        "true: `eager`; false: ENGINE_COMPILE's choice (compiled on GPU)",
        enforce_eager,
        example="true",
    ),
    mapped("DEVICE", "ENGINE_DEVICE", "`auto`, `cuda` or `cpu`; other devices are refused", device, example="cpu"),
    mapped(
        "BASE_PATH",
        "MODEL_CACHE_DIR",
        "`BASE_PATH/huggingface-cache/hub`, where worker-vllm kept its hub cache",
        to_setting("model_cache_dir", lambda v: v.rstrip("/") + "/huggingface-cache/hub"),
        example="/vol",
    ),
    mapped(
        "VLLM_STARTUP_TIMEOUT",
        "ENGINE_START_TIMEOUT",
        "the budget reserves all of it for a start",
        to_setting("engine_start_timeout"),
        example="900",
    ),
    mapped("REQUEST_TIMEOUT", "ENGINE_REQUEST_TIMEOUT", "", to_setting("engine_request_timeout"), example="300"),
    mapped(
        "VLLM_EXTRA_ARGS",
        "ENGINE_EXTRA_ARGS",
        "appended after it, so it wins as in worker-vllm",
        vllm_extra_args,
        example="--max-log-len 10",
    ),
    mapped("TOKENIZER", "TOKENIZER_NAME", "vLLM's own name for it", to_setting("tokenizer_name"), example="org/t"),
    mapped("REVISION", "MODEL_REVISION", "vLLM's own name for it", to_setting("model_revision"), example="abc123"),
    mapped(
        "SERVED_MODEL_NAME",
        "OPENAI_SERVED_MODEL_NAME_OVERRIDE",
        "vLLM's own name for it",
        to_setting("openai_served_model_name_override"),
        example="my-model",
    ),
    *(
        mapped(name, "SPECULATIVE_CONFIG", SPEC, to_part("speculative", key, kind), example=example, unset=unset)
        for name, key, kind, example, unset in (
            ("SPECULATIVE_METHOD", "method", str, "ngram", ()),
            ("SPECULATIVE_MODEL", "model", str, "org/draft", ()),
            ("NUM_SPECULATIVE_TOKENS", "num_speculative_tokens", int, "3", ("0",)),
            ("NGRAM_PROMPT_LOOKUP_MAX", "prompt_lookup_max", int, "4", ("0",)),
            ("NGRAM_PROMPT_LOOKUP_MIN", "prompt_lookup_min", int, "2", ("0",)),
            ("SPECULATIVE_DRAFT_TENSOR_PARALLEL_SIZE", "draft_tensor_parallel_size", int, "1", ("0",)),
            ("SPECULATIVE_MAX_MODEL_LEN", "max_model_len", int, "2048", ("0",)),
            ("SPECULATIVE_QUANTIZATION", "quantization", str, "awq", ()),
            ("SPECULATIVE_MODEL_REVISION", "revision", str, "abc123", ()),
            ("SPECULATIVE_ENFORCE_EAGER", "enforce_eager", bool, "true", ()),
        )
    ),
    # --- vLLM flags under another name, or converted ----------------------------------------------
    mapped("OPENAI_RESPONSE_ROLE", "--response-role", "", to_flag("--response-role"), example="bot"),
    mapped(
        "VLLM_CONFIG_FILE",
        "--config",
        "the file's contents are in the answers' fingerprint",
        to_flag("--config"),
        example="/cfg.yaml",
    ),
    mapped(
        "VLLM_ATTENTION_BACKEND",
        "--attention-backend",
        "vLLM's older name",
        to_flag("--attention-backend"),
        example="FLASH_ATTN",
    ),
    mapped(
        "DISABLE_LOG_REQUESTS",
        "--enable-log-requests",
        "inverted, as vLLM did",
        to_switch("--enable-log-requests", invert=True),
        example="true",
    ),
    mapped(
        "DISABLE_LOGGING_REQUEST",
        "--enable-log-requests",
        "inverted (worker-vllm's older docs)",
        to_switch("--enable-log-requests", invert=True),
        example="true",
    ),
    mapped("WORKER_USE_RAY", "--distributed-executor-backend", "true: `ray`", worker_use_ray, example="true"),
    mapped(
        "LIMIT_MM_PER_PROMPT",
        "--limit-mm-per-prompt",
        "JSON, or worker-vllm's `image=1,video=0`",
        to_flag("--limit-mm-per-prompt", limit_mm),
        example="image=2",
    ),
    mapped(
        "STRUCTURED_OUTPUTS_CONFIG",
        "--structured-outputs-config",
        "",
        to_flag("--structured-outputs-config"),
        example='{"backend": "xgrammar"}',
    ),
    mapped(
        "GUIDED_DECODING_BACKEND",
        "--structured-outputs-config",
        GUIDED + " (`backend`)",
        to_part("guided", "backend"),
        example="xgrammar",
    ),
    mapped(
        "GUIDED_DECODING_DISABLE_ANY_WHITESPACE",
        "--structured-outputs-config",
        GUIDED,
        to_part("guided", "disable_any_whitespace", bool),
        example="true",
    ),
    mapped(
        "GUIDED_DECODING_DISABLE_ADDITIONAL_PROPERTIES",
        "--structured-outputs-config",
        GUIDED,
        to_part("guided", "disable_additional_properties", bool),
        example="true",
    ),
    # --- read from the engine's environment ---------------------------------------------------------
    env("HF_TOKEN", "gated and private models; kept off the command line"),
    env("PYTORCH_ALLOC_CONF", "read by torch in the engine"),
    env("VLLM_USE_DEEP_GEMM", "read by vLLM, as any of its own VLLM_* variables"),
    # --- no effect here, said at start ---------------------------------------------------------------
    *(
        noted(name, "a stream yields the engine's pieces as they come; there is no token batching to size")
        for name in ("DEFAULT_BATCH_SIZE", "DEFAULT_MIN_BATCH_SIZE", "DEFAULT_BATCH_SIZE_GROWTH_FACTOR")
    ),
    noted("VLLM_PORT", "the engine takes a free loopback port at each start (ENGINE_PORT=0)"),
    noted("VLLM_API_KEY", "RunPod authenticates callers; the engine listens on loopback only"),
    noted("TRANSFORMERS_VERSION", "the image pins transformers with vLLM; build another image to change it"),
    noted("VLLM_VERSION", "a build argument: this image carries vLLM 0.32.0 (the Dockerfile's VLLM_IMAGE)"),
    noted("WORKER_CUDA_VERSION", "a build argument: the image's base decides CUDA"),
    noted("SPECULATIVE_DISABLE_BY_BATCH_SIZE", GONE + " (speed only)"),
    noted("GUIDED_DECODING_DISABLE_FALLBACK", GONE + " (vLLM 0.32 does not fall back between backends)"),
    *(
        noted(name, GONE + " (speed or memory only)")
        for name in (
            "SCHEDULER_DELAY_FACTOR",
            "NUM_SCHEDULER_STEPS",
            "USE_V2_BLOCK_MANAGER",
            "MAX_SEQ_LEN_TO_CAPTURE",
            "MAX_CONTEXT_LEN_TO_CAPTURE",
            "TOKENIZER_POOL_SIZE",
            "TOKENIZER_POOL_TYPE",
            "TOKENIZER_POOL_EXTRA_CONFIG",
            "PREEMPTION_MODE",
            "PREEMPTION_CHECK_PERIOD",
            "PREEMPTION_CPU_CAPACITY",
            "SWAP_SPACE",
            "NUM_LOOKAHEAD_SLOTS",
            "DISABLE_FRONTEND_MULTIPROCESSING",
            "DISABLE_MM_PREPROCESSOR_CACHE",
            "MAX_LONG_PARTIAL_PREFILLS",
            "MAX_NUM_PARTIAL_PREFILLS",
            "ENABLE_MULTIMODAL_ENCODER_DATA_PARALLEL",
            "LORA_EXTRA_VOCAB_SIZE",
        )
    ),
    noted("CUDA_GRAPH_SIZES", GONE + ": set COMPILATION_CONFIG's cudagraph_capture_sizes (speed only)"),
    *(
        noted(name, GONE + ": set EPLB_CONFIG (speed only)")
        for name in ("EPLB_LOG_BALANCEDNESS", "EPLB_STEP_INTERVAL", "EPLB_WINDOW_SIZE", "NUM_REDUNDANT_EXPERTS")
    ),
    noted("OVERRIDE_POOLER_CONFIG", GONE + ": set POOLER_CONFIG (pooling models; this worker generates text)"),
    # --- refused at start: honouring them is impossible, ignoring them would change answers or break the worker
    refused("ROPE_SCALING", GONE + ": set HF_OVERRIDES='{\"rope_scaling\": ...}'"),
    refused("ROPE_THETA", GONE + ": set HF_OVERRIDES='{\"rope_theta\": ...}'"),
    refused("QUANTIZATION_PARAM_PATH", GONE + ": vLLM reads fp8 KV-cache scales from the checkpoint"),
    refused("LOGITS_PROCESSOR_PATTERN", GONE + ": set LOGITS_PROCESSORS"),
    refused("LONG_LORA_SCALING_FACTORS", GONE + "; unset it"),
    refused("ENABLE_LORA_BIAS", GONE + "; unset it", harmless=FALSE),
    refused("CALCULATE_KV_SCALES", GONE + "; unset it", harmless=FALSE),
    refused("OVERRIDE_ATTENTION_DTYPE", GONE + "; unset it"),
    refused(
        "TASK",
        GONE + ": this worker generates text; set RUNNER/CONVERT for vLLM's other runners",
        harmless=frozenset({"generate", "auto"}),
        example="embed",
    ),
    refused("SKIP_TOKENIZER_INIT", "the worker sends text and reads text back; unset it", harmless=FALSE),
    *(
        refused(name, LOOPBACK, harmless=harmless)
        for name, harmless in (
            ("UDS", frozenset()),
            ("SSL_KEYFILE", frozenset()),
            ("SSL_CERTFILE", frozenset()),
            ("SSL_CA_CERTS", frozenset()),
            ("SSL_CERT_REQS", frozenset({"0"})),
            ("ENABLE_SSL_REFRESH", FALSE),
        )
    ),
)
