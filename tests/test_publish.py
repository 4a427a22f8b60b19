"""publish: verify a builder-written folder, upload it with checksums, set tiers (real moto server)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from builder.errors import SourceError
from builder.publish import publish
from builder.storage import Tiers, download_prefix, get_lifecycle
from core.manifest import read_manifest
from tests.prerequisites import strict

TINY = Path(__file__).resolve().parent.parent / "models" / "tiny"


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client(
        "s3",
        endpoint_url=f"http://{host}:{port}",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    client.create_bucket(Bucket="models")
    yield client
    server.stop()


@pytest.fixture
def model(tmp_path: Path) -> Path:
    if not (TINY / "manifest.json").is_file() and not strict():
        pytest.skip("models/tiny not built (make models)")
    return Path(shutil.copytree(TINY, tmp_path / "tiny"))


def test_publish_read_back_and_tiers(model: Path, tmp_path: Path, s3: Any) -> None:
    result, rule = publish(model, "s3://models/tiny/v1", tiers=Tiers(30, 180, "DEEP_ARCHIVE"), client=s3)
    assert "model.safetensors" in result.uploaded and "manifest.json" in result.uploaded
    assert rule is not None
    again, _ = publish(model, "s3://models/tiny/v1", tiers=None, client=s3)
    assert again.uploaded == [] and len(again.skipped) == len(result.uploaded)

    back = tmp_path / "back"
    download_prefix("s3://models/tiny/v1", back, client=s3)
    assert read_manifest(back) == read_manifest(model)
    assert (back / "model.safetensors").read_bytes() == (model / "model.safetensors").read_bytes()

    rules = get_lifecycle("models", client=s3)
    assert [r["ID"] for r in rules] == ["tiers:tiny/v1"]
    assert [(t["Days"], t["StorageClass"]) for t in rules[0]["Transitions"]] == [
        (30, "STANDARD_IA"),
        (180, "DEEP_ARCHIVE"),
    ]


def test_publish_refuses_a_tampered_folder(model: Path, s3: Any) -> None:
    (model / "tokenizer.json").write_text("{}")
    with pytest.raises(SourceError, match=r"does not match its manifest: tokenizer\.json"):
        publish(model, "s3://models/bad", tiers=None, client=s3)
    (model / "manifest.json").unlink()
    with pytest.raises(SourceError, match="manifest missing"):
        publish(model, "s3://models/bad", tiers=None, client=s3)
