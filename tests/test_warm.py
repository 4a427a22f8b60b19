"""`builder warm`: the engine started once at build time, vLLM's cache kept beside the model, used by the worker.

The tiny model runs eager in tests (nothing compiled), so its test checks the
mechanics: the cache folder is made beside the model, vLLM writes into it, and a
worker on that folder (a new container from the image) points vLLM there. SmolLM2
compiles: its test checks that a new container compiles nothing again.
bench/cold_start_bench.py measures what the kept cache saves.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from builder.__main__ import main as builder_main
from builder.warm import warm
from handler.engine import EngineManager
from handler.engine_command import TORCH_CACHE_FOLDERS, engine_env
from handler.model import resolve_model
from handler.settings import load_settings
from tests.engine_support import require_model, worker_env


def test_a_worker_points_vllm_at_the_models_kept_cache(tmp_path: Path) -> None:
    (tmp_path / "vllm-cache").mkdir()
    model = resolve_model(load_settings({"MODEL_NAME": str(tmp_path)}).model)
    settings = load_settings({"MODEL_NAME": str(tmp_path)})
    env = engine_env(settings.engine, "cpu", {}, model)
    assert env["VLLM_CACHE_ROOT"] == str(tmp_path / "vllm-cache")
    assert env["VLLM_USE_AOT_COMPILE"] == "0"  # the AOT artifacts never loaded on a restart
    # torch's own compile caches (all the CPU build compiles) are kept in the same folder
    assert env["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "vllm-cache" / "torchinductor")
    assert env["TRITON_CACHE_DIR"] == str(tmp_path / "vllm-cache" / "triton")
    mine = engine_env(settings.engine, "cpu", {"TORCHINDUCTOR_CACHE_DIR": "/x"}, model)
    assert mine["TORCHINDUCTOR_CACHE_DIR"] == "/x"  # the user's own setting stands
    chosen = load_settings({"MODEL_NAME": str(tmp_path), "ENGINE_CACHE_DIR": "/runpod-volume/vllm"})
    assert engine_env(chosen.engine, "cpu", {}, model)["VLLM_CACHE_ROOT"] == "/runpod-volume/vllm"
    assert "VLLM_CACHE_ROOT" not in engine_env(load_settings({}).engine, "cpu", {}, resolve_model(load_settings({
        "MODEL_NAME": str(tmp_path / "elsewhere")}).model))  # fmt: skip


def test_warm_refuses_a_folder_that_is_no_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert builder_main(["warm", str(tmp_path)]) == 2
    assert "not a model folder" in capsys.readouterr().err


@pytest.mark.engine
def test_warm_keeps_vllms_cache_beside_the_model(tmp_path: Path) -> None:
    image = tmp_path / "image-model"
    shutil.copytree(require_model("tiny"), image)
    env = {**os.environ, **worker_env("tiny")}
    built = asyncio.run(warm(image, env))
    kept = image / "vllm-cache"
    assert built["cache"] == str(kept) and built["phases"]["total_s"] > 0
    assert any(path.is_file() for path in kept.rglob("*")), "vLLM wrote nothing into the kept cache"
    container = tmp_path / "container-model"  # a new container: the image's folder, copied
    shutil.copytree(image, container)
    settings = load_settings({**env, "MODEL_NAME": str(container)})
    assert engine_env(settings.engine, "cpu", {}, resolve_model(settings.model))["VLLM_CACHE_ROOT"] == str(
        container / "vllm-cache"
    )


def _compiled_graphs(model_dir: Path) -> set[Path]:
    graphs = model_dir / "vllm-cache" / TORCH_CACHE_FOLDERS["inductor"] / "fxgraph"
    return {path.relative_to(graphs) for path in graphs.rglob("*") if path.is_file()}


@pytest.mark.engine
@pytest.mark.realmodel
def test_a_new_container_compiles_nothing_from_the_kept_cache(tmp_path: Path) -> None:
    """vLLM's CPU build compiles through inductor's own cache, not VLLM_CACHE_ROOT: before it was
    kept beside the model, a new container (no /tmp/torchinductor_<user>) compiled SmolLM2 again."""
    image = tmp_path / "image-model"
    shutil.copytree(require_model("smollm2"), image)
    env = {k: v for k, v in os.environ.items() if k not in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")}
    env.update(worker_env("smollm2", ENGINE_COMPILE="compiled"))  # the CPU's default, eager, compiles nothing
    asyncio.run(warm(image, env))
    compiled = _compiled_graphs(image)
    assert compiled, "the build's compile left no graphs in the kept cache"

    container = tmp_path / "container-model"  # a new container: the image's folder, copied elsewhere
    shutil.copytree(image, container)
    settings = load_settings({**env, "MODEL_NAME": str(container)})
    # its own empty /tmp (a short path: vLLM binds its sockets there): a graph compiled anyway would land in it
    with tempfile.TemporaryDirectory(prefix="ct") as fresh:
        engine = EngineManager(settings.engine, resolve_model(settings.model), env={**env, "TMPDIR": fresh})

        async def start() -> None:
            try:
                await engine.ensure_started()
            finally:
                await engine.aclose()

        asyncio.run(start())
        assert engine.last_start_phases["total_s"] > 0
        assert _compiled_graphs(container) == compiled  # every graph loaded from the kept cache; none compiled
        compiled_anyway = [p for p in Path(fresh).glob("torchinductor_*/fxgraph/**/*") if p.is_file()]
        assert not compiled_anyway, "the new container compiled its graphs again, in /tmp"


def test_the_builder_runs_without_the_worker_package(tmp_path: Path) -> None:
    """The image's model stage copies core/ and builder/ alone: every command must still register there."""
    import subprocess
    import sys

    from handler.settings import REPO_ROOT

    shutil.copytree(REPO_ROOT / "builder", tmp_path / "builder")
    shutil.copytree(REPO_ROOT / "core", tmp_path / "core")
    done = subprocess.run([sys.executable, "-m", "builder", "--help"], cwd=tmp_path, capture_output=True, check=False,
                          text=True, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "warm" in done.stdout and "bake" in done.stdout
