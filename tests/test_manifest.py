"""core.manifest and builder.manifest: hashing, round trip, and clear errors for bad manifests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from builder.manifest import check_files, files_digest, hash_files, write_manifest
from core.errors import ManifestError
from core.manifest import FORMAT_VERSION, MANIFEST_NAME, FileEntry, Manifest, Source, read_manifest


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"a": 1}')
    (folder / "sub" / "weights.bin").write_bytes(b"\x00\x01" * 1000)
    (folder / MANIFEST_NAME).write_text("{}")  # never hashed
    return folder


def _manifest(folder: Path) -> Manifest:
    return Manifest(name="m", source=Source(kind="local", uri=str(folder)), files=hash_files(folder), dtype="float32")


def test_hash_files_lists_every_file_but_the_manifest_sorted_with_real_hashes(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    entries = hash_files(folder)
    assert [e.path for e in entries] == ["config.json", "sub/weights.bin"]
    assert entries[1].size == 2000
    assert entries[1].sha256 == hashlib.sha256(b"\x00\x01" * 1000).hexdigest()
    assert [e.path for e in hash_files(folder, ["sub/weights.bin"])] == ["sub/weights.bin"]


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    manifest = _manifest(folder).model_copy(update={"extra": {"gguf": {"sha256": "x"}}, "max_model_len": 2048})
    path = write_manifest(folder, manifest)
    assert path == folder / MANIFEST_NAME
    assert read_manifest(folder) == manifest
    assert read_manifest(path) == manifest
    assert json.loads(path.read_text())["format_version"] == FORMAT_VERSION
    assert not list(folder.glob(".manifest.*"))  # no temp file left behind


def test_check_files_reports_missing_resized_changed_and_unlisted_files(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    manifest = _manifest(folder)
    assert check_files(folder, manifest, deep=True) == []
    (folder / "config.json").write_text('{"a": 2}')  # same size, new content
    assert check_files(folder, manifest) == []
    assert check_files(folder, manifest, deep=True) == ["config.json: sha256 differs from the manifest"]
    (folder / "sub" / "weights.bin").write_bytes(b"short")
    (folder / "stray.txt").write_text("?")
    problems = check_files(folder, manifest)
    assert "sub/weights.bin: size 5, manifest says 2000" in problems
    assert "stray.txt: not in the manifest" in problems
    (folder / "config.json").unlink()
    assert "config.json: missing" in check_files(folder, manifest)


def test_missing_manifest_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as err:
        read_manifest(tmp_path)
    assert str(tmp_path / MANIFEST_NAME) in str(err.value)
    assert "missing" in err.value.problem


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"name": "m", "source": {"kind": "ftp", "uri": "x"}, "files": []}', "source.kind"),
        ('{"name": "m", "source": {"kind": "local", "uri": "x"}, "files": [], "colour": 1}', "colour"),
        (
            '{"name": "m", "source": {"kind": "local", "uri": "x"}, '
            '"files": [{"path": "a", "size": 1, "sha256": "zz"}]}',
            "files.0.sha256",
        ),
        ('{"format_version": 99, "name": "m", "source": {"kind": "local", "uri": "x"}, "files": []}', "newer"),
    ],
)
def test_invalid_manifest_names_the_path_and_the_problem(tmp_path: Path, content: str, expected: str) -> None:
    (tmp_path / MANIFEST_NAME).write_text(content)
    with pytest.raises(ManifestError) as err:
        read_manifest(tmp_path)
    assert err.value.path == tmp_path / MANIFEST_NAME
    assert expected in str(err.value)


def test_manifest_is_frozen_and_validates_entries() -> None:
    with pytest.raises(ValueError, match="size"):
        FileEntry(path="a", size=-1, sha256="0" * 64)
    manifest = Manifest(name="m", source=Source(kind="tiny", uri="t"), files=[])
    with pytest.raises(ValueError, match="frozen"):
        manifest.name = "other"


def test_files_digest_changes_with_any_file(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    before = files_digest(hash_files(folder))
    assert before == files_digest(reversed(hash_files(folder)))
    (folder / "config.json").write_text('{"a": 2}')
    assert files_digest(hash_files(folder)) != before


def test_the_kept_compile_cache_is_not_part_of_the_model(tmp_path: Path) -> None:
    """`builder warm` writes vLLM's cache into the model folder after its manifest: the folder stays intact
    (fetch's up-to-date check, publish and bake read it so) and the cache is never hashed."""
    from handler.engine_command import ENGINE_CACHE_FOLDER

    folder = _folder(tmp_path)
    manifest = _manifest(folder)
    cache = folder / ENGINE_CACHE_FOLDER / "modelinfos"
    cache.mkdir(parents=True)
    (cache / "llama.json").write_text("{}")
    assert check_files(folder, manifest, deep=True) == []
    assert [f.path for f in hash_files(folder)] == [f.path for f in manifest.files]
    (folder / "stray.bin").write_bytes(b"x")
    assert check_files(folder, manifest) == ["stray.bin: not in the manifest"]  # other extras still count
