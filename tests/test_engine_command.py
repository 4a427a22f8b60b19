"""The engine's command line and environment as the settings choose them (pure: no engine runs)."""

from __future__ import annotations

from handler.engine_command import (
    ModelRef,
    answer_fingerprint,
    engine_args,
    engine_env,
    one_engine_process,
    resolve_compile,
)
from handler.settings import load_settings

MODEL = ModelRef(path="/models/m", name="m")


def args_env(device: str, **env: str) -> tuple[list[str], dict[str, str]]:
    settings = load_settings(env).engine
    return engine_args(settings, MODEL, device, 8000), engine_env(settings, device, {}, MODEL)


def test_auto_is_eager_in_one_engine_process_on_cpu() -> None:
    args, env = args_env("cpu")
    assert "--enforce-eager" in args
    assert args[args.index("--distributed-executor-backend") + 1] == "uni"
    assert env["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"  # without it the CPU build turns uni back into mp


def test_auto_is_compiled_on_gpu_with_vllms_own_executor() -> None:
    args, env = args_env("cuda")
    assert "--enforce-eager" not in args and "--distributed-executor-backend" not in args
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in env


def test_compiled_on_cpu_keeps_one_process_and_eager_is_never_given_twice() -> None:
    args, _ = args_env("cpu", ENGINE_COMPILE="compiled")
    assert "--enforce-eager" not in args and "uni" in args
    args, _ = args_env("cpu", ENGINE_EXTRA_ARGS="--enforce-eager")
    assert args.count("--enforce-eager") == 1
    args, _ = args_env("cuda", ENGINE_COMPILE="eager")
    assert "--enforce-eager" in args


def test_a_named_executor_or_tensor_parallelism_keeps_vllms_layout() -> None:
    args, env = args_env("cpu", ENGINE_EXTRA_ARGS="--distributed-executor-backend mp")
    assert args.count("--distributed-executor-backend") == 1 and "uni" not in args
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in env
    assert not one_engine_process(load_settings({"TENSOR_PARALLEL_SIZE": "2"}).engine, "cpu")


def test_the_users_environment_wins() -> None:
    settings = load_settings({}).engine
    env = engine_env(settings, "cpu", {"VLLM_ENABLE_V1_MULTIPROCESSING": "1"}, MODEL)
    assert env["VLLM_ENABLE_V1_MULTIPROCESSING"] == "1"


def test_the_compile_mode_is_part_of_the_answers_fingerprint() -> None:
    eager = load_settings({}).engine
    compiled = load_settings({"ENGINE_COMPILE": "compiled"}).engine
    assert resolve_compile(eager, "cpu") == "eager" and resolve_compile(compiled, "cpu") == "compiled"
    assert answer_fingerprint(eager, MODEL, "cpu") != answer_fingerprint(compiled, MODEL, "cpu")
    assert answer_fingerprint(eager, MODEL, "cuda") == answer_fingerprint(compiled, MODEL, "cuda")  # auto: compiled
