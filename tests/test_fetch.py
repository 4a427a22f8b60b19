"""builder fetch: local folders, the hub (download call injected at its boundary), S3, and the CLI.

Runs in the worker venv: these sources need no torch. The GGUF source is in test_gguf_convert.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from builder.__main__ import main
from builder.errors import SourceError
from builder.fetch import FetchOptions, classify, fetch
from builder.hub import hub_token, parse_hub_uri
from builder.manifest import check_files
from builder.model_files import staging_dir, wanted_by_vllm
from core.manifest import MANIFEST_NAME, read_manifest

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def make_model(folder: Path, weights: bytes = b"w" * 4096) -> Path:
    """A folder shaped like a hub checkout: what vLLM needs plus files it does not."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "dtype": "bfloat16"}))
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "tokenizer.json").write_text('{"version": "1.0"}')
    (folder / "chat_template.jinja").write_text("{{ messages }}")
    (folder / "pytorch_model.bin").write_bytes(b"old weights")
    (folder / "README.md").write_text("# card")
    (folder / "original").mkdir(exist_ok=True)
    (folder / "original" / "consolidated.pth").write_bytes(b"pth")
    return folder


def test_classify_names_each_kind(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert classify("smollm2").kind == "gguf"
    assert classify("smollm2").known is not None
    assert classify(str(gguf)).kind == "gguf"
    assert classify(str(tmp_path)).kind == "local"
    assert classify("hf:HuggingFaceTB/SmolLM2-135M-Instruct").uri == "hf:HuggingFaceTB/SmolLM2-135M-Instruct"
    assert classify("s3://bucket/models/x/").uri == "s3://bucket/models/x"
    with pytest.raises(SourceError, match="hf:ORG/NAME"):
        classify("hf:no-slash")
    with pytest.raises(SourceError, match="not found"):
        classify(str(tmp_path / "missing.gguf"))
    with pytest.raises(SourceError, match="unknown source"):
        classify(str(tmp_path / "nothing-here"))


def test_vllm_file_selection() -> None:
    for wanted in ("config.json", "model-00001-of-00002.safetensors", "tokenizer.model", "chat_template.jinja"):
        assert wanted_by_vllm(wanted)
    for unwanted in (
        "pytorch_model.bin",
        "README.md",
        "manifest.json",
        "original/consolidated.pth",
        ".gitattributes",
        ".cache/huggingface/x.json",
    ):
        assert not wanted_by_vllm(unwanted)


def test_local_folder_copies_only_what_vllm_needs_and_second_run_is_a_no_op(tmp_path: Path) -> None:
    src = make_model(tmp_path / "src")
    out = tmp_path / "out"
    first = fetch(str(src), out)
    assert not first.up_to_date
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja", MANIFEST_NAME]
    )
    manifest = read_manifest(out)
    assert manifest.source.kind == "local"
    assert manifest.dtype == "bfloat16"
    assert manifest.source.revision.startswith("sha256:")
    weights = next(e for e in manifest.files if e.path == "model.safetensors")
    assert weights.sha256 == hashlib.sha256(b"w" * 4096).hexdigest()
    assert check_files(out, manifest, deep=True) == []
    stamp = (out / MANIFEST_NAME).stat().st_mtime_ns

    second = fetch(str(src), out)
    assert second.up_to_date
    assert (out / MANIFEST_NAME).stat().st_mtime_ns == stamp

    (src / "model.safetensors").write_bytes(b"v" * 4096)  # same size, new content
    third = fetch(str(src), out)
    assert not third.up_to_date
    assert third.manifest.source.revision != first.manifest.source.revision  # the worker's cache keys see it
    assert (out / "model.safetensors").read_bytes() == b"v" * 4096


def test_damaged_output_is_rebuilt(tmp_path: Path) -> None:
    src = make_model(tmp_path / "src")
    out = tmp_path / "out"
    fetch(str(src), out)
    (out / "tokenizer.json").unlink()
    assert not fetch(str(src), out).up_to_date
    assert (out / "tokenizer.json").is_file()


def test_a_folder_without_config_fails_and_writes_nothing(tmp_path: Path) -> None:
    src = make_model(tmp_path / "src")
    (src / "config.json").unlink()
    out = tmp_path / "out"
    with pytest.raises(SourceError, match=r"no config\.json"):
        fetch(str(src), out)
    assert not out.exists()
    assert not staging_dir(out).exists()


def test_output_inside_the_source_is_refused(tmp_path: Path) -> None:
    src = make_model(tmp_path / "src")
    for out in (src, src / "converted"):
        with pytest.raises(SourceError, match="overlaps the source folder"):
            fetch(str(src), out)
    assert (src / "README.md").is_file()


def test_revision_is_refused_for_non_hub_sources(tmp_path: Path) -> None:
    src = make_model(tmp_path / "src")
    with pytest.raises(SourceError, match="--revision applies to hf: sources only"):
        fetch(str(src), tmp_path / "out", FetchOptions(revision=COMMIT))


class FakeHub:
    """Stands in for huggingface_hub.snapshot_download: serves a folder named by the commit."""

    def __init__(self, root: Path, fail: bool = False) -> None:
        self.root = root
        self.fail = fail
        self.calls: list[tuple[str, str, list[str], str | None]] = []

    def __call__(self, repo_id: str, revision: str, patterns: list[str], token: str | None) -> Path:
        self.calls.append((repo_id, revision, patterns, token))
        if self.fail:
            raise SourceError(f"hub download of {repo_id}@{revision} failed: 404")
        return make_model(self.root / repo_id.replace("/", "--") / "snapshots" / COMMIT)


def test_hub_source_passes_repo_revision_patterns_and_token(tmp_path: Path) -> None:
    hub = FakeHub(tmp_path / "hub")
    out = tmp_path / "out"
    opts = FetchOptions(revision=COMMIT, env={"HF_TOKEN": "hf_secret"}, hub_download=hub)
    result = fetch("hf:Org/Model", out, opts)
    assert not result.up_to_date
    repo_id, revision, patterns, token = hub.calls[0]
    assert (repo_id, revision, token) == ("Org/Model", COMMIT, "hf_secret")
    assert "*.safetensors" in patterns
    assert "*.bin" not in patterns
    manifest = read_manifest(out)
    assert manifest.name == "Org/Model"
    assert (manifest.source.kind, manifest.source.revision) == ("hub", COMMIT)
    assert manifest.extra["resolved_revision"] == COMMIT
    assert not (out / "pytorch_model.bin").exists()

    # A pinned commit already present: no download call at all.
    assert fetch("hf:Org/Model", out, opts).up_to_date
    assert len(hub.calls) == 1


def test_hub_branch_revision_asks_the_hub_again_but_keeps_unchanged_output(tmp_path: Path) -> None:
    hub = FakeHub(tmp_path / "hub")
    out = tmp_path / "out"
    opts = FetchOptions(hub_download=hub)
    fetch("hf:Org/Model", out, opts)
    assert fetch("hf:Org/Model", out, opts).up_to_date
    assert [call[1] for call in hub.calls] == ["main", "main"]


def test_failed_hub_download_leaves_the_previous_output_untouched(tmp_path: Path) -> None:
    out = tmp_path / "out"
    fetch(str(make_model(tmp_path / "src")), out)
    before = read_manifest(out)
    with pytest.raises(SourceError, match="404"):
        fetch("hf:Org/Model", out, FetchOptions(hub_download=FakeHub(tmp_path / "hub", fail=True)))
    assert read_manifest(out) == before
    assert check_files(out, before, deep=True) == []


def test_hub_token_comes_from_env_then_the_build_secret(tmp_path: Path) -> None:
    secret = tmp_path / "hf_token"
    assert hub_token({}, secret) is None
    secret.write_text("from-secret\n")
    assert hub_token({}, secret) == "from-secret"
    assert hub_token({"HF_TOKEN": "from-env"}, secret) == "from-env"
    assert parse_hub_uri("hf:a/b") == "a/b"


def test_s3_source_links_the_downloaded_files_and_records_the_uri(tmp_path: Path) -> None:
    calls: list[tuple[str, Path]] = []

    def download(uri: str, dest: Path) -> list[Path]:
        calls.append((uri, dest))
        make_model(dest)
        return [p for p in dest.rglob("*") if p.is_file()]

    out = tmp_path / "out"
    opts = FetchOptions(cache_dir=tmp_path / "cache", s3_download=download)
    result = fetch("s3://bucket/models/tiny", out, opts)
    assert calls[0] == ("s3://bucket/models/tiny", (tmp_path / "cache" / "s3" / "bucket" / "models" / "tiny").resolve())
    assert result.manifest.source.uri == "s3://bucket/models/tiny"
    assert (out / "model.safetensors").read_bytes() == b"w" * 4096
    assert fetch("s3://bucket/models/tiny", out, opts).up_to_date


def test_cli_exit_codes_and_messages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_model(tmp_path / "src")
    out = tmp_path / "out"
    assert main(["fetch", str(src), "--out", str(out)]) == 0
    assert main(["fetch", str(src), "--out", str(out)]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["fetch", str(tmp_path / "missing.gguf"), "--out", str(out)]) == 1
    assert "not found" in capsys.readouterr().err
