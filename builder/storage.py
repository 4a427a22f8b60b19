"""The only module that talks to S3 (boto3): upload a folder, download a prefix, lifecycle tiers.

- `upload_folder(folder, uri)`: every file under `folder` to `s3://bucket/prefix/<relative path>`
  with its SHA-256 as object metadata (and S3's own SHA-256 checksum, verified by the
  server); files whose size and SHA-256 already match on S3 are skipped. manifest.json goes
  last, so a reader that sees it finds every file it lists.
- `download_prefix(uri, dest)`: every object under the prefix, in parallel, with a byte
  progress bar; a file already complete (same size, and SHA-256 when the object carries it)
  is skipped, and a partial `<file>.part` left by an interrupted run is resumed with a
  ranged GET.
- `set_lifecycle(uri, tiers)`: one bucket lifecycle rule for the prefix (STANDARD, then
  STANDARD_IA after N days, then GLACIER or DEEP_ARCHIVE after M days), replacing only this
  prefix's rule and keeping the bucket's other rules.

The endpoint comes from boto3's own configuration (AWS_ENDPOINT_URL, profiles) unless a
client is passed in; tests pass one pointed at a local moto server.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from builder.errors import BuilderError
from builder.manifest import sha256_file
from core.manifest import MANIFEST_NAME

SHA_KEY = "sha256"  # user metadata key (x-amz-meta-sha256)
PART_SUFFIX = ".part"
_CHUNK = 1 << 20
ArchiveClass = Literal["GLACIER", "DEEP_ARCHIVE", "GLACIER_IR"]


class StorageError(BuilderError):
    """An S3 call failed or an S3 URI is invalid; the message names the bucket/key."""


@dataclass(frozen=True)
class Tiers:
    """Storage tiers for a prefix: STANDARD, then STANDARD_IA after `ia_days`, then `archive_class`."""

    ia_days: int = 30
    archive_days: int = 90
    archive_class: ArchiveClass = "GLACIER"

    def validate(self) -> None:
        if self.ia_days < 30:
            raise StorageError(f"ia_days={self.ia_days}: S3 moves objects to STANDARD_IA after 30 days at the earliest")
        if self.archive_days < self.ia_days + 30:
            raise StorageError(
                f"archive_days={self.archive_days}: must be at least ia_days + 30 ({self.ia_days + 30}), "
                "S3's minimum stay in STANDARD_IA"
            )


@dataclass(frozen=True)
class UploadResult:
    uploaded: list[str]
    skipped: list[str]


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """'s3://bucket/some/prefix' -> ('bucket', 'some/prefix') (no leading/trailing slash)."""
    if not uri.startswith("s3://"):
        raise StorageError(f"{uri!r} is not an s3://bucket/prefix URI")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not bucket:
        raise StorageError(f"{uri!r} names no bucket")
    return bucket, prefix.strip("/")


def make_client(endpoint_url: str | None = None) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint_url or None)


def _error(action: str, where: str, exc: Exception) -> StorageError:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
    return StorageError(f"S3 {action} {where} failed: {code}")


def _key(prefix: str, rel: str) -> str:
    return f"{prefix}/{rel}" if prefix else rel


def _remote_head(client: Any, bucket: str, key: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    try:
        head: dict[str, Any] = client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise _error("HEAD", f"s3://{bucket}/{key}", exc) from exc
    return head


def upload_folder(folder: Path, uri: str, *, client: Any = None, workers: int = 4) -> UploadResult:
    """Upload every file under `folder` to the prefix; unchanged files (size + SHA-256) are skipped."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError
    from tqdm import tqdm

    folder = Path(folder)
    if not folder.is_dir():
        raise StorageError(f"{folder} is not a folder")
    bucket, prefix = parse_s3_uri(uri)
    client = client or make_client()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(PART_SUFFIX))
    rels = [p.relative_to(folder).as_posix() for p in files]
    total = sum(p.stat().st_size for p in files)
    uploaded: list[str] = []
    skipped: list[str] = []
    bar = tqdm(total=total, unit="B", unit_scale=True, desc=f"upload {uri}")

    def one(path: Path, rel: str) -> None:
        key = _key(prefix, rel)
        digest = sha256_file(path)
        head = _remote_head(client, bucket, key)
        size = path.stat().st_size
        if head and head.get("ContentLength") == size and head.get("Metadata", {}).get(SHA_KEY) == digest:
            skipped.append(rel)
            bar.update(size)
            return
        try:
            client.upload_file(
                str(path),
                bucket,
                key,
                ExtraArgs={"Metadata": {SHA_KEY: digest}, "ChecksumAlgorithm": "SHA256"},
                Callback=bar.update,
            )
        except (ClientError, BotoCoreError) as exc:
            raise _error("upload", f"s3://{bucket}/{key}", exc) from exc
        except S3UploadFailedError as exc:  # boto3's transfer wraps the ClientError; its text names the code
            raise StorageError(f"S3 upload s3://{bucket}/{key} failed: {exc}") from exc
        uploaded.append(rel)

    pairs = list(zip(files, rels, strict=True))
    last = [pair for pair in pairs if pair[1] == MANIFEST_NAME]
    with bar, ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda pair: one(*pair), [pair for pair in pairs if pair[1] != MANIFEST_NAME]))
        for pair in last:
            one(*pair)
    return UploadResult(uploaded=sorted(uploaded), skipped=sorted(skipped))


def list_prefix(uri: str, *, client: Any = None) -> list[dict[str, Any]]:
    """Every object under the prefix: dicts with Key, Size."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = parse_s3_uri(uri)
    client = client or make_client()
    objects: list[dict[str, Any]] = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=f"{prefix}/" if prefix else ""
        ):
            objects.extend(page.get("Contents", []))
    except (ClientError, BotoCoreError) as exc:
        raise _error("list", uri, exc) from exc
    return objects


def _download_one(
    client: Any, bucket: str, key: str, size: int, target: Path, *, progress: Callable[[int], None]
) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    head = _remote_head(client, bucket, key) or {}
    expected = head.get("Metadata", {}).get(SHA_KEY)
    if target.is_file() and target.stat().st_size == size and (expected is None or sha256_file(target) == expected):
        progress(size)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + PART_SUFFIX)
    have = part.stat().st_size if part.is_file() else 0
    if have > size:
        part.unlink()
        have = 0
    progress(have)
    try:
        if have < size:
            extra = {"Range": f"bytes={have}-"} if have else {}
            body = client.get_object(Bucket=bucket, Key=key, **extra)["Body"]
            with part.open("ab" if have else "wb") as fh:
                for chunk in iter(lambda: body.read(_CHUNK), b""):
                    fh.write(chunk)
                    progress(len(chunk))
        elif not part.exists():
            part.touch()
    except (ClientError, BotoCoreError) as exc:
        raise _error("download", f"s3://{bucket}/{key}", exc) from exc
    if expected is not None and (got := sha256_file(part)) != expected:
        part.unlink()
        raise StorageError(f"s3://{bucket}/{key}: SHA-256 {got} does not match the object's metadata {expected}")
    part.replace(target)


def download_prefix(uri: str, dest: Path, *, client: Any = None, workers: int = 8) -> list[Path]:
    """Download every object under `uri` into `dest` (parallel, resumable); returns the local paths."""
    from tqdm import tqdm

    bucket, prefix = parse_s3_uri(uri)
    client = client or make_client()
    objects = list_prefix(uri, client=client)
    if not objects:
        raise StorageError(f"{uri}: no objects under this prefix")
    dest = Path(dest)
    strip = len(prefix) + 1 if prefix else 0
    jobs = [
        (obj["Key"], int(obj["Size"]), dest / obj["Key"][strip:]) for obj in objects if not obj["Key"].endswith("/")
    ]
    total = sum(size for _, size, _ in jobs)
    with (
        tqdm(total=total, unit="B", unit_scale=True, desc=f"download {uri}") as bar,
        ThreadPoolExecutor(max_workers=workers) as pool,
    ):
        futures = [
            pool.submit(_download_one, client, bucket, key, size, path, progress=bar.update) for key, size, path in jobs
        ]
        for future in futures:
            future.result()
    return sorted(path for _, _, path in jobs)


def lifecycle_rule(prefix: str, tiers: Tiers) -> dict[str, Any]:
    """The lifecycle rule (S3 API shape) for one prefix (pure)."""
    tiers.validate()
    return {
        "ID": f"tiers:{prefix or '*'}",
        "Filter": {"Prefix": f"{prefix}/" if prefix else ""},
        "Status": "Enabled",
        "Transitions": [
            {"Days": tiers.ia_days, "StorageClass": "STANDARD_IA"},
            {"Days": tiers.archive_days, "StorageClass": tiers.archive_class},
        ],
    }


def get_lifecycle(bucket: str, *, client: Any = None) -> list[dict[str, Any]]:
    """The bucket's lifecycle rules (empty when it has none)."""
    from botocore.exceptions import ClientError

    client = client or make_client()
    try:
        rules: list[dict[str, Any]] = client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchLifecycleConfiguration":
            return []
        raise _error("get lifecycle of", bucket, exc) from exc
    return rules


def set_lifecycle(uri: str, tiers: Tiers, *, client: Any = None) -> dict[str, Any]:
    """Put this prefix's tier rule on the bucket, keeping rules for other prefixes; returns the rule."""
    from botocore.exceptions import ClientError

    bucket, prefix = parse_s3_uri(uri)
    client = client or make_client()
    rule = lifecycle_rule(prefix, tiers)
    rules = [r for r in get_lifecycle(bucket, client=client) if r.get("ID") != rule["ID"]] + [rule]
    try:
        client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
    except ClientError as exc:
        raise _error("put lifecycle on", bucket, exc) from exc
    return rule
