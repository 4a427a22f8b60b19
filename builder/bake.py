"""`python -m builder bake MODEL_DIR [--dest /models]`: the step the Dockerfile runs.

Places a model folder the builder wrote (fetch or quantize) where the worker expects it
and writes the manifest the worker reads at start-up (Settings.model_manifest, default
/models/manifest.json; the model folder is the manifest's folder): name, source and
revision, quantization, max_model_len, every file's size and SHA-256, and under `extra`
the model path and bake details. The image sets HF_HUB_OFFLINE=1: everything vLLM needs is
in that folder. At run time a model on a mounted RunPod network volume
(Settings.network_volume_dir, with its own manifest) is preferred over the baked one.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from builder.errors import OutputError, SourceError
from builder.manifest import check_files, write_manifest
from core.errors import ManifestError
from core.manifest import MANIFEST_NAME, Manifest, read_manifest

DEFAULT_DEST = Path("/models")


def _quantization(folder: Path, manifest: Manifest) -> str:
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    qc = config.get("quantization_config")
    method = qc.get("quant_method", "") if isinstance(qc, dict) else ""
    if manifest.quantization and method and manifest.quantization != method:
        raise SourceError(f"{folder}: manifest says {manifest.quantization!r}, config.json says {method!r}")
    return manifest.quantization or method


def bake(source: Path, dest: Path = DEFAULT_DEST, *, max_model_len: int | None = None, move: bool = False) -> Manifest:
    """Verify `source` against its manifest, place it at `dest`, write dest/manifest.json; returns it."""
    source, dest = Path(source), Path(dest)
    try:
        manifest = read_manifest(source)
    except ManifestError as exc:
        raise SourceError(f"cannot bake {source}: {exc.problem}") from exc
    if problems := check_files(source, manifest, deep=True):
        raise SourceError(f"cannot bake {source}: it does not match its manifest: {'; '.join(problems[:5])}")
    quantization = _quantization(source, manifest)
    if quantization not in ("", "awq"):
        raise SourceError(f"{source}: quantization {quantization!r} is not one the worker serves ('' or 'awq')")
    same = source.resolve() == dest.resolve() if dest.exists() else False
    if not same:
        try:
            dest.mkdir(parents=True, exist_ok=True)
            for entry in manifest.files:
                target = dest / entry.path
                target.parent.mkdir(parents=True, exist_ok=True)
                (shutil.move if move else shutil.copy2)(str(source / entry.path), str(target))
        except OSError as exc:
            raise OutputError(f"cannot place the model at {dest}: {exc.strerror}") from exc
    baked = manifest.model_copy(
        update={
            "quantization": quantization,
            "max_model_len": max_model_len or manifest.max_model_len,
            "extra": {
                **manifest.extra,
                "bake": {"model_path": str(dest.resolve()), "from": str(source), "hf_hub_offline": True},
            },
        }
    )
    write_manifest(dest, baked)
    return baked


def _command(args: argparse.Namespace) -> int:
    manifest = bake(Path(args.model_dir), Path(args.dest), max_model_len=args.max_model_len, move=args.move)
    print(
        f"bake: {manifest.name} ({manifest.quantization or 'unquantized'}, max_model_len "
        f"{manifest.max_model_len or 'model default'}) -> {Path(args.dest) / MANIFEST_NAME}"
    )
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("bake", help="place a model where the worker reads it and write its manifest")
    p.add_argument("model_dir", help="a model folder the builder wrote (with manifest.json)")
    p.add_argument("--dest", default=str(DEFAULT_DEST), help="folder the worker reads (MODEL_MANIFEST's folder)")
    p.add_argument("--max-model-len", type=int, default=None, help="context length to serve with")
    p.add_argument("--move", action="store_true", help="move the files instead of copying (image builds)")
    p.set_defaults(func=_command)
