"""worker-vllm's environment (handler.compat): each of its variables supported, mapped, or refused at start.

Pure: settings and the engine's command line, no engine runs; but for one test that parses the
command line with the engine venv's own vLLM (its argument parser only).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from handler.compat import BY_NAME, GENERIC_VARS, markdown_table, translate
from handler.compat_flags import flag_of
from handler.compat_rules import LoraModule, Var, parse_lora_modules
from handler.compat_table import NAMED
from handler.engine_command import ModelRef, answer_fingerprint, engine_args, feature_args
from handler.errors import ConfigError
from handler.settings import REPO_ROOT, Settings, load_settings
from tests.prerequisites import ENGINE_PY, needs_engine_venv

MODEL = ModelRef(path="/models/m", name="m")
DEFAULT_ARGS = engine_args(load_settings({}).engine, MODEL, "cuda", 8000)

# worker-vllm's .runpod/hub.json defaults (commit 7a92503), as an endpoint deployed from its Hub page carries them
HUB = {
    "TOKENIZER_MODE": "auto", "SKIP_TOKENIZER_INIT": "false", "TRUST_REMOTE_CODE": "false", "DTYPE": "auto",
    "KV_CACHE_DTYPE": "auto", "MAX_MODEL_LEN": "auto", "DISTRIBUTED_EXECUTOR_BACKEND": "mp",
    "RAY_WORKERS_USE_NSIGHT": "false", "PIPELINE_PARALLEL_SIZE": "1", "TENSOR_PARALLEL_SIZE": "1",
    "MAX_PARALLEL_LOADING_WORKERS": "1", "ENABLE_PREFIX_CACHING": "false", "DISABLE_SLIDING_WINDOW": "false",
    "SEED": "0", "MAX_NUM_SEQS": "256", "MAX_LOGPROBS": "20", "DISABLE_LOG_STATS": "false", "QUANTIZATION": "None",
    "ENABLE_LORA": "false", "MAX_LORAS": "1", "MAX_LORA_RANK": "16", "LORA_DTYPE": "auto",
    "FULLY_SHARDED_LORAS": "false", "DEVICE": "auto", "SCHEDULER_DELAY_FACTOR": "0", "ENABLE_CHUNKED_PREFILL": "True",
    "SPECULATIVE_METHOD": "", "ENABLE_LOG_REQUESTS": "False", "GPU_MEMORY_UTILIZATION": "0.95", "BLOCK_SIZE": "16",
    "ENFORCE_EAGER": "false", "DISABLE_CUSTOM_ALL_REDUCE": "false", "DEFAULT_BATCH_SIZE": "50",
    "DEFAULT_MIN_BATCH_SIZE": "1", "DEFAULT_BATCH_SIZE_GROWTH_FACTOR": "3", "RAW_OPENAI_OUTPUT": "true",
    "OPENAI_RESPONSE_ROLE": "assistant", "MAX_CONCURRENCY": "30", "ENABLE_EXPERT_PARALLEL": "false",
    "BASE_PATH": "/runpod-volume", "ENABLE_AUTO_TOOL_CHOICE": "false", "TOOL_CALL_PARSER": "", "REASONING_PARSER": "",
    "PYTORCH_ALLOC_CONF": "expandable_segments:True", "VLLM_USE_DEEP_GEMM": "0",
}  # fmt: skip
TEMPLATE = "{% for m in messages %}{{ m.content }}{% endfor %}"
USER = {
    "MODEL_NAME": "Qwen/Qwen3-8B", "MAX_MODEL_LEN": "16384", "GPU_MEMORY_UTILIZATION": "0.92",
    "ENABLE_PREFIX_CACHING": "1", "KV_CACHE_DTYPE": "fp8", "TRUST_REMOTE_CODE": "1", "CUSTOM_CHAT_TEMPLATE": TEMPLATE,
    "MAX_NUM_BATCHED_TOKENS": "8192", "ENABLE_AUTO_TOOL_CHOICE": "true", "TOOL_CALL_PARSER": "hermes",
    "REASONING_PARSER": "qwen3", "OPENAI_SERVED_MODEL_NAME_OVERRIDE": "qwen", "HF_TOKEN": "hf_secret",
    "MAX_CONCURRENCY": "16",
}  # fmt: skip
ENDPOINT = HUB | USER  # a worker-vllm endpoint's environment, copied as is
ENDPOINT_ARGS = [
    # the worker's own
    "--model", "Qwen/Qwen3-8B", "--served-model-name", "Qwen/Qwen3-8B", "--host", "127.0.0.1", "--port", "8000",
    "--dtype", "auto", "--max-model-len", "16384", "--max-num-seqs", "256", "--generation-config", "vllm",
    "--disable-uvicorn-access-log", "--gpu-memory-utilization", "0.92",
    # worker-vllm's settings this worker types
    "--trust-remote-code", "--chat-template", TEMPLATE, "--enable-prefix-caching", "--kv-cache-dtype", "fp8",
    "--max-num-batched-tokens", "8192", "--enable-auto-tool-choice", "--tool-call-parser", "hermes",
    "--reasoning-parser", "qwen3",
    # the flags worker-vllm passes on by their names
    "--response-role", "assistant", "--block-size", "16", "--distributed-executor-backend", "mp", "--lora-dtype",
    "auto", "--max-logprobs", "20", "--max-loras", "1", "--max-lora-rank", "16", "--max-parallel-loading-workers", "1",
    "--pipeline-parallel-size", "1", "--seed", "0", "--tokenizer-mode", "auto", "--no-disable-custom-all-reduce",
    "--no-disable-sliding-window", "--enable-chunked-prefill", "--no-enable-expert-parallel",
    "--no-enable-log-requests", "--no-fully-sharded-loras", "--no-ray-workers-use-nsight",
]  # fmt: skip


def args_of(env: dict[str, str], device: str = "cuda") -> list[str]:
    return engine_args(load_settings(env).engine, ModelRef(path="/models/m", name="m"), device, 8000)


def added(env: dict[str, str]) -> list[str]:
    """The arguments an environment adds to the defaults' (the defaults' come first, unchanged)."""
    args = args_of(env)
    assert args[: len(DEFAULT_ARGS)] == DEFAULT_ARGS
    return args[len(DEFAULT_ARGS) :]


def fingerprint(env: dict[str, str]) -> dict[str, object]:
    return answer_fingerprint(load_settings(env).engine, MODEL, "cuda")


def test_a_worker_vllm_endpoints_environment_copied_as_is_starts_this_worker(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="handler.settings"):
        settings = load_settings(ENDPOINT)
    model = ModelRef(path="Qwen/Qwen3-8B", name="Qwen/Qwen3-8B")
    assert engine_args(settings.engine, model, "cuda", 8000) == ENDPOINT_ARGS
    assert "hf_secret" not in json.dumps(ENDPOINT_ARGS)  # the token reaches vLLM through its environment only
    assert (settings.max_concurrency, settings.raw_openai_output, settings.openai_served_model_name_override) == (
        16, True, "qwen")  # fmt: skip
    assert settings.model_cache_dir == Path("/runpod-volume/huggingface-cache/hub")
    assert (settings.engine_dtype, settings.engine_compile, settings.quantization) == ("", "auto", "")
    noted = {"DEFAULT_BATCH_SIZE", "DEFAULT_MIN_BATCH_SIZE", "DEFAULT_BATCH_SIZE_GROWTH_FACTOR"}
    noted.add("SCHEDULER_DELAY_FACTOR")
    assert {r.getMessage().split(" ", 1)[0] for r in caplog.records} == noted  # each said once, at start


def test_the_readme_table_is_the_compat_table() -> None:
    """README "Coming from worker-vllm" is generated by `python -m handler.compat`; regenerate it on change."""
    text = (REPO_ROOT / "README.md").read_text()
    start, end = text.index("<!-- worker-vllm:start -->"), text.index("<!-- worker-vllm:end -->")
    assert text[start:end].split("-->", 1)[1].strip() == markdown_table()


def test_names_are_listed_once_and_never_shadow_this_workers_own() -> None:
    names = [var.name for var in NAMED]
    assert len(names) == len(set(names)) and not set(names) & set(GENERIC_VARS)
    own = {name.upper() for name in Settings.model_fields}
    assert {var.name for var in NAMED if var.kind == "same"} <= own
    assert not (set(GENERIC_VARS) | {v.name for v in NAMED if v.kind != "same"}) & own
    assert {var.target for var in NAMED if var.kind == "setting"} <= own


# --- every name of the table ---------------------------------------------------------------------


def _env_for(var: Var) -> dict[str, str]:
    env = {var.name: var.example}
    if var.kind == "setting" and var.target == "SPECULATIVE_CONFIG" and var.name != "SPECULATIVE_METHOD":
        env["SPECULATIVE_METHOD"] = "ngram"  # a method makes the assembled config (alone, they did nothing)
    if var.name in ("ENABLE_AUTO_TOOL_CHOICE",):
        env["TOOL_CALL_PARSER"] = "hermes"
    return env


@pytest.mark.parametrize("var", NAMED, ids=lambda var: var.name)
def test_every_name_is_honoured(var: Var, caplog: pytest.LogCaptureFixture) -> None:
    env = _env_for(var)
    if var.kind == "refused":
        with pytest.raises(ConfigError) as refused:
            load_settings(env)
        assert refused.value.field == var.name and var.name in refused.value.message
        assert var.why in refused.value.message
        for harmless in var.harmless:
            assert added({var.name: harmless}) == []  # vLLM's default asked for: nothing to refuse
        return
    with caplog.at_level(logging.WARNING, logger="handler.settings"):
        settings = load_settings(env)
    said = [r.getMessage() for r in caplog.records]
    if var.kind == "noted":
        assert said == [f"{var.name} (worker-vllm) has no effect here: {var.why}"]
        assert settings == Settings() and added(env) == []
        return
    assert said == []
    if var.kind == "same":
        field = var.name.lower()
        assert getattr(settings, field) != Settings.model_fields[field].default
    elif var.kind == "setting" and var.target == "SPECULATIVE_CONFIG":
        assert settings.speculative_config and "--speculative-config" in added(env)
    elif var.kind == "setting":
        field = var.target.lower()
        assert getattr(settings, field) != Settings.model_fields[field].default
    elif var.kind == "vllm":
        extra = added(env)
        assert var.target in extra or "--no-" + var.target.removeprefix("--") in extra
    else:  # env: vLLM or torch reads it from the engine's environment, which the engine manager passes on
        assert settings == Settings() and added(env) == []


@pytest.mark.parametrize("name", sorted(GENERIC_VARS))
def test_every_flag_worker_vllm_passes_by_its_name(name: str) -> None:
    flag, form = flag_of(name), GENERIC_VARS[name]
    if form == "value":
        assert added({name: "7"}) == [flag, "7"]
    elif form == "switch":
        assert added({name: "True"}) == [flag] and added({name: "0"}) == ["--no-" + flag.removeprefix("--")]
    else:
        assert added({name: "yes"}) == [flag] and added({name: "false"}) == []
    assert added({name: ""}) == added({name: "None"}) == []  # unset, as worker-vllm (vLLM reads None as unset)
    if form != "value":
        with pytest.raises(ConfigError, match=f"{name}: 'maybe' is not true or false"):
            load_settings({name: "maybe"})


@needs_engine_venv
def test_every_flag_exists_in_the_engines_vllm() -> None:
    """Each flag this table can give, and a copied endpoint's whole command line, parse with vLLM's own parser."""
    flags = {flag_of(name) for name in GENERIC_VARS} | {v.target for v in NAMED if v.kind == "vllm"}
    lora = {"LORA_MODULES": '[{"name": "ad", "path": "/lora/ad"}]', "SPECULATIVE_CONFIG": '{"method": "ngram"}'}
    flags |= {a for a in feature_args(load_settings(lora).engine) if a.startswith("--")}
    script = """
import json, sys
from vllm.entrypoints.launchers.cli_args import make_arg_parser
from vllm.utils.argparse_utils import FlexibleArgumentParser
parser = make_arg_parser(FlexibleArgumentParser())
flags, args = json.loads(sys.stdin.read())
known = {s for a in parser._actions for s in a.option_strings}
print(json.dumps(sorted(f for f in flags if f not in known)))
parser.parse_args(args)
"""
    args = ENDPOINT_ARGS[ENDPOINT_ARGS.index("--max-model-len") :]  # --model: no hub lookup while parsing
    proc = subprocess.run([str(ENGINE_PY), "-c", script], input=json.dumps([sorted(flags), args]),
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_python_m_handler_stops_at_a_refused_name_and_says_what_to_set() -> None:
    env = {**os.environ, "ROPE_THETA": "1000000", "DEFAULT_BATCH_SIZE": "50"}
    proc = subprocess.run([sys.executable, "-m", "handler"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "ROPE_THETA: vLLM 0.32 has no such setting: set HF_OVERRIDES" in proc.stderr


# --- conversions ---------------------------------------------------------------------------------


def test_auto_and_zero_mean_this_workers_own_choice() -> None:
    settings = load_settings({"MAX_MODEL_LEN": "auto", "DTYPE": "auto", "MAX_NUM_BATCHED_TOKENS": "0",
                              "QUANTIZATION": "None", "KV_CACHE_DTYPE": "auto"})  # fmt: skip
    assert settings == Settings()
    assert args_of({"DTYPE": "auto"}, "cpu") == args_of({}, "cpu")  # float32 on CPU, not vLLM's auto (bf16)
    assert "--dtype" in args_of({"DTYPE": "half"}) and args_of({"DTYPE": "half"})[9] == "half"


def test_enforce_eager_true_is_eager_and_false_leaves_the_workers_choice() -> None:
    assert load_settings({"ENFORCE_EAGER": "true"}).engine_compile == "eager"
    assert load_settings({"ENFORCE_EAGER": "false"}).engine_compile == "auto"
    assert "--enforce-eager" in args_of({"ENFORCE_EAGER": "1"}, "cuda")


def test_speculative_variables_assemble_one_config_as_worker_vllm_did(caplog: pytest.LogCaptureFixture) -> None:
    eagle = load_settings({"SPECULATIVE_MODEL": "org/llama-EAGLE3-draft", "NUM_SPECULATIVE_TOKENS": "3"})
    assert json.loads(eagle.speculative_config) == {"method": "eagle3", "model": "org/llama-EAGLE3-draft",
                                                    "num_speculative_tokens": 3}  # fmt: skip
    ngram = load_settings({"NGRAM_PROMPT_LOOKUP_MAX": "4", "NGRAM_PROMPT_LOOKUP_MIN": "0"})  # 0: unset (hub's)
    assert json.loads(ngram.speculative_config) == {"method": "ngram", "prompt_lookup_max": 4}
    draft = load_settings({"SPECULATIVE_MODEL": "org/small"})
    assert json.loads(draft.speculative_config)["method"] == "draft_model"
    with caplog.at_level(logging.WARNING, logger="handler.settings"):
        assert load_settings({"NUM_SPECULATIVE_TOKENS": "5"}).speculative_config == ""
    assert "NUM_SPECULATIVE_TOKENS (worker-vllm) have no effect here" in caplog.text
    with pytest.raises(ConfigError, match="NUM_SPECULATIVE_TOKENS: 'x' is not a whole number"):
        load_settings({"NUM_SPECULATIVE_TOKENS": "x", "SPECULATIVE_METHOD": "ngram"})


def test_guided_decoding_variables_become_vllms_structured_outputs_config() -> None:
    extra = added({"GUIDED_DECODING_BACKEND": "outlines", "GUIDED_DECODING_DISABLE_ANY_WHITESPACE": "true"})
    assert extra[0] == "--structured-outputs-config"
    assert json.loads(extra[1]) == {"backend": "outlines", "disable_any_whitespace": True}
    with pytest.raises(ConfigError, match="GUIDED_DECODING_BACKEND: 'nope' is none of"):
        load_settings({"GUIDED_DECODING_BACKEND": "nope"})


def test_limit_mm_per_prompt_takes_worker_vllms_form_and_json() -> None:
    assert added({"LIMIT_MM_PER_PROMPT": "image=2,video=0"}) == ["--limit-mm-per-prompt", '{"image": 2, "video": 0}']
    assert added({"LIMIT_MM_PER_PROMPT": '{"image": 1}'}) == ["--limit-mm-per-prompt", '{"image": 1}']


def test_extra_args_come_last_worker_vllms_after_this_workers() -> None:
    extra = added({"SEED": "1", "ENGINE_EXTRA_ARGS": "--seed 2", "VLLM_EXTRA_ARGS": "--seed '3'"})
    assert extra == ["--seed", "1", "--seed", "2", "--seed", "3"]  # argparse: the last one wins, as in worker-vllm
    with pytest.raises(ConfigError, match="VLLM_EXTRA_ARGS: cannot be split"):
        load_settings({"VLLM_EXTRA_ARGS": "--x 'open"})


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"DTYPE": "half", "ENGINE_DTYPE": "float32"}, ("DTYPE", "ENGINE_DTYPE")),
        ({"ENFORCE_EAGER": "true", "ENGINE_COMPILE": "compiled"}, ("ENFORCE_EAGER", "ENGINE_COMPILE")),
        ({"TOKENIZER": "a/b", "TOKENIZER_NAME": "c/d"}, ("TOKENIZER", "TOKENIZER_NAME")),
        ({"REVISION": "r1", "MODEL_REVISION": "r2"}, ("REVISION", "MODEL_REVISION")),
        ({"BASE_PATH": "/vol", "MODEL_CACHE_DIR": "/elsewhere"}, ("BASE_PATH", "MODEL_CACHE_DIR")),
        ({"OPENAI_RESPONSE_ROLE": "bot", "RESPONSE_ROLE": "assistant"}, ("OPENAI_RESPONSE_ROLE", "RESPONSE_ROLE")),
        ({"WORKER_USE_RAY": "true", "DISTRIBUTED_EXECUTOR_BACKEND": "mp"}, ("WORKER_USE_RAY",)),
        ({"DISABLE_LOG_REQUESTS": "true", "ENABLE_LOG_REQUESTS": "true"}, ("DISABLE_LOG_REQUESTS",)),
        ({"SPECULATIVE_METHOD": "ngram", "NGRAM_PROMPT_LOOKUP_MAX": "4", "SPECULATIVE_CONFIG": '{"method": "x"}'},
         ("SPECULATIVE_METHOD", "SPECULATIVE_CONFIG")),
        ({"GUIDED_DECODING_BACKEND": "xgrammar", "STRUCTURED_OUTPUTS_CONFIG": '{"backend": "guidance"}'},
         ("GUIDED_DECODING_BACKEND", "STRUCTURED_OUTPUTS_CONFIG")),
        ({"DEVICE": "tpu"}, ("DEVICE",)),
    ],
)  # fmt: skip
def test_two_names_that_disagree_are_refused_naming_both(env: dict[str, str], names: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(env)
    assert all(name in refused.value.message for name in names), refused.value.message


def test_names_that_agree_are_fine() -> None:
    assert load_settings({"DTYPE": "half", "ENGINE_DTYPE": "half"}).engine_dtype == "half"
    assert load_settings({"BASE_PATH": "/runpod-volume/"}).model_cache_dir == Settings().model_cache_dir


def test_lora_modules_in_worker_vllms_and_vllms_forms() -> None:
    listed = '[{"name": "sql", "path": "org/sql-lora"}, {"name": "fr", "path": "/l/fr", "base_model_name": "m"}]'
    expected = (LoraModule("sql", "org/sql-lora"), LoraModule("fr", "/l/fr", "m"))
    assert parse_lora_modules(listed) == expected
    assert parse_lora_modules("sql=org/sql-lora fr=/l/fr") == (expected[0], LoraModule("fr", "/l/fr"))
    assert parse_lora_modules('{"name": "sql", "path": "org/sql-lora"}') == expected[:1]
    assert added({"LORA_MODULES": listed}) == [
        "--enable-lora", "--lora-modules", '{"name": "sql", "path": "org/sql-lora"}',
        '{"name": "fr", "path": "/l/fr", "base_model_name": "m"}',
    ]  # fmt: skip
    assert load_settings({"LORA_MODULES": listed}).engine.lora_adapters == expected
    assert added({"ENABLE_LORA": "true"}) == ["--enable-lora"]
    for bad in ("[1, 2]", "sql", '[{"name": "a"}]', "a=x a=y", "[{"):
        with pytest.raises(ConfigError, match="LORA_MODULES"):
            load_settings({"LORA_MODULES": bad})


def test_checks_vllm_would_fail_a_billed_start_on_are_made_at_start() -> None:
    with pytest.raises(ConfigError, match="ENABLE_AUTO_TOOL_CHOICE needs TOOL_CALL_PARSER"):
        load_settings({"ENABLE_AUTO_TOOL_CHOICE": "true"})
    with pytest.raises(ConfigError, match="SPECULATIVE_CONFIG"):
        load_settings({"SPECULATIVE_CONFIG": "[1]"})
    with pytest.raises(ConfigError, match="ENABLE_PREFIX_CACHING"):
        load_settings({"ENABLE_PREFIX_CACHING": "sometimes"})


def test_translate_is_a_pure_function_of_the_mapping() -> None:
    env = dict(ENDPOINT)
    assert translate(env) == translate(dict(ENDPOINT)) and env == ENDPOINT
    assert translate({}).settings == {} and translate({}).vllm_args == []


# --- the answers' fingerprint --------------------------------------------------------------------


def test_a_deployment_without_them_keeps_its_fingerprint() -> None:
    assert set(fingerprint({})) == {"model", "path", "revision", "quantization", "dtype", "device", "max_model_len",
                                    "tensor_parallel_size", "compile", "extra_args"}  # fmt: skip
    assert fingerprint(HUB | {"DEFAULT_BATCH_SIZE": "10", "HF_TOKEN": "x", "VLLM_PORT": "8001"}) == fingerprint(HUB)


@pytest.mark.parametrize(
    "env",
    [
        {"KV_CACHE_DTYPE": "fp8"}, {"DTYPE": "half"}, {"TRUST_REMOTE_CODE": "1"}, {"CUSTOM_CHAT_TEMPLATE": TEMPLATE},
        {"TOKENIZER_NAME": "org/t"}, {"TOKENIZER": "org/t"}, {"SPECULATIVE_CONFIG": '{"method": "ngram"}'},
        {"SPECULATIVE_METHOD": "ngram", "NGRAM_PROMPT_LOOKUP_MAX": "4"}, {"LORA_MODULES": "a=/l/a"},
        {"ENABLE_PREFIX_CACHING": "false"}, {"MAX_NUM_BATCHED_TOKENS": "512"}, {"REASONING_PARSER": "qwen3"},
        {"TOOL_CALL_PARSER": "hermes"}, {"SEED": "1"}, {"HF_OVERRIDES": '{"rope_theta": 1e6}'},
        {"OPENAI_RESPONSE_ROLE": "bot"}, {"GENERATION_CONFIG": "auto"}, {"VLLM_EXTRA_ARGS": "--seed 2"},
        {"MODEL_REVISION": "r2"}, {"REVISION": "r2"}, {"QUANTIZATION": "fp8"}, {"MAX_MODEL_LEN": "4096"},
        {"ENFORCE_EAGER": "true"}, {"GUIDED_DECODING_BACKEND": "xgrammar"},
    ],
    ids="+".join,
)  # fmt: skip
def test_the_fingerprint_changes_with_each_setting_that_changes_answers(env: dict[str, str]) -> None:
    settings = load_settings(env)
    model = ModelRef(path="/models/m", name="m", revision=settings.model_revision, quantization=settings.quantization)
    assert answer_fingerprint(settings.engine, model, "cuda") != fingerprint({})


def test_the_fingerprint_follows_a_named_files_contents(tmp_path: Path) -> None:
    template, config = tmp_path / "chat.jinja", tmp_path / "vllm.yaml"
    template.write_text(TEMPLATE)
    config.write_text("seed: 1\n")
    env = {"CUSTOM_CHAT_TEMPLATE": str(template), "VLLM_CONFIG_FILE": str(config)}
    before = fingerprint(env)
    assert before == fingerprint(env)
    template.write_text(TEMPLATE + "!")
    after_template = fingerprint(env)
    config.write_text("seed: 2\n")
    assert len({json.dumps(fp, sort_keys=True) for fp in (before, after_template, fingerprint(env))}) == 3


def test_every_kind_is_described_in_the_table() -> None:
    assert {var.kind for var in NAMED} == {"same", "setting", "vllm", "env", "noted", "refused"}
    assert all(var.why for var in NAMED if var.kind in ("noted", "refused", "env"))
    assert BY_NAME["HF_TOKEN"].kind == "env"
