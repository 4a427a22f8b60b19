"""builder.storage against a real local S3 server (moto's server mode)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from builder.storage import (
    StorageError,
    Tiers,
    download_prefix,
    get_lifecycle,
    lifecycle_rule,
    parse_s3_uri,
    set_lifecycle,
    upload_folder,
)


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_server: str, request: pytest.FixtureRequest) -> Any:
    client = boto3.client(
        "s3", endpoint_url=s3_server, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    # unique per run too: moto's backends live as long as the process (mutmut runs the tests twice in one)
    bucket = f"{request.node.name.replace('_', '-')[:50].lower()}-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    client.bucket = bucket
    return client


def make_folder(root: Path) -> Path:
    folder = root / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"a": 1}')
    (folder / "sub" / "weights.bin").write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    return folder


def test_upload_then_download(tmp_path: Path, s3: Any) -> None:
    folder = make_folder(tmp_path)
    uri = f"s3://{s3.bucket}/models/m1"
    first = upload_folder(folder, uri, client=s3)
    assert first.uploaded == ["config.json", "sub/weights.bin"] and first.skipped == []
    head = s3.head_object(Bucket=s3.bucket, Key="models/m1/sub/weights.bin")
    assert head["Metadata"]["sha256"] == hashlib.sha256((folder / "sub" / "weights.bin").read_bytes()).hexdigest()

    again = upload_folder(folder, uri, client=s3)
    assert again.uploaded == [] and again.skipped == ["config.json", "sub/weights.bin"]
    (folder / "config.json").write_text('{"a": 2}')
    assert upload_folder(folder, uri, client=s3).uploaded == ["config.json"]

    dest = tmp_path / "back"
    paths = download_prefix(uri, dest, client=s3)
    assert paths == [dest / "config.json", dest / "sub" / "weights.bin"]
    assert (dest / "config.json").read_text() == '{"a": 2}'
    assert (dest / "sub" / "weights.bin").read_bytes() == (folder / "sub" / "weights.bin").read_bytes()


def test_download_resumes_a_partial_file(tmp_path: Path, s3: Any) -> None:
    folder = make_folder(tmp_path)
    uri = f"s3://{s3.bucket}/m"
    upload_folder(folder, uri, client=s3)
    data = (folder / "sub" / "weights.bin").read_bytes()
    dest = tmp_path / "dl"
    (dest / "sub").mkdir(parents=True)
    (dest / "sub" / "weights.bin.part").write_bytes(data[:300_000])
    ranges: list[str] = []
    s3.meta.events.register(
        "provide-client-params.s3.GetObject", lambda params, **_: ranges.append(params.get("Range", ""))
    )
    download_prefix(uri, dest, client=s3)
    assert (dest / "sub" / "weights.bin").read_bytes() == data
    assert not (dest / "sub" / "weights.bin.part").exists()
    assert "bytes=300000-" in ranges

    ranges.clear()
    download_prefix(uri, dest, client=s3)  # complete: nothing fetched again
    assert ranges == []


def test_corrupt_partial_is_rejected(tmp_path: Path, s3: Any) -> None:
    folder = make_folder(tmp_path)
    uri = f"s3://{s3.bucket}/m"
    upload_folder(folder, uri, client=s3)
    dest = tmp_path / "dl"
    (dest / "sub").mkdir(parents=True)
    (dest / "sub" / "weights.bin.part").write_bytes(b"\xff" * 1000)
    with pytest.raises(StorageError, match=r"SHA-256 .* does not match"):
        download_prefix(uri, dest, client=s3)
    download_prefix(uri, dest, client=s3)  # the bad part was dropped; a rerun succeeds
    assert (dest / "sub" / "weights.bin").read_bytes() == (folder / "sub" / "weights.bin").read_bytes()


def test_lifecycle_rules_on_the_server(s3: Any) -> None:
    s3.put_bucket_lifecycle_configuration(
        Bucket=s3.bucket,
        LifecycleConfiguration={
            "Rules": [{"ID": "other", "Filter": {"Prefix": "logs/"}, "Status": "Enabled", "Expiration": {"Days": 7}}]
        },
    )
    set_lifecycle(f"s3://{s3.bucket}/models/m1", Tiers(30, 120, "DEEP_ARCHIVE"), client=s3)
    set_lifecycle(f"s3://{s3.bucket}/models/m1", Tiers(45, 200, "GLACIER"), client=s3)  # replaces its own rule
    rules = {r["ID"]: r for r in get_lifecycle(s3.bucket, client=s3)}
    assert set(rules) == {"other", "tiers:models/m1"}
    rule = rules["tiers:models/m1"]
    assert rule["Filter"]["Prefix"] == "models/m1/"
    assert [(t["Days"], t["StorageClass"]) for t in rule["Transitions"]] == [(45, "STANDARD_IA"), (200, "GLACIER")]


def test_tier_and_uri_validation(s3: Any) -> None:
    with pytest.raises(StorageError, match="30 days at the earliest"):
        lifecycle_rule("p", Tiers(ia_days=10))
    with pytest.raises(StorageError, match="at least ia_days \\+ 30"):
        lifecycle_rule("p", Tiers(ia_days=30, archive_days=40))
    assert parse_s3_uri("s3://b/x/y/") == ("b", "x/y")
    with pytest.raises(StorageError, match="not an s3://"):
        parse_s3_uri("http://b/x")
    with pytest.raises(StorageError, match="no objects"):
        download_prefix(f"s3://{s3.bucket}/empty", Path("/nonexistent"), client=s3)
    with pytest.raises(StorageError, match="NoSuchBucket"):
        upload_folder(Path(__file__).parent, "s3://no-such-bucket-x/p", client=s3)
