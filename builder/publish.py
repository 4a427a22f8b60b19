"""`python -m builder publish MODEL_DIR s3://bucket/prefix`: upload a model folder with tiers.

Checks the folder against its manifest.json first (sizes and SHA-256), uploads it with
per-file checksums (unchanged files are skipped: a second publish uploads nothing), and
sets the prefix's storage tiers as a bucket lifecycle rule.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from builder.errors import SourceError
from builder.manifest import check_files
from builder.storage import Tiers, UploadResult, make_client, set_lifecycle, upload_folder
from core.errors import ManifestError
from core.manifest import read_manifest


def publish(
    folder: Path, uri: str, *, tiers: Tiers | None, client: Any = None, require_manifest: bool = True
) -> tuple[UploadResult, dict[str, Any] | None]:
    """Verify, upload, set tiers (None: leave the bucket's lifecycle alone). Returns (result, rule)."""
    folder = Path(folder)
    if tiers is not None:
        tiers.validate()
    try:
        manifest = read_manifest(folder)
    except ManifestError as exc:
        if require_manifest:
            raise SourceError(f"{folder}: {exc.problem}; publish only folders the builder wrote") from exc
        manifest = None
    if manifest is not None and (problems := check_files(folder, manifest, deep=True)):
        raise SourceError(f"{folder} does not match its manifest: {'; '.join(problems[:5])}")
    result = upload_folder(folder, uri, client=client)
    rule = set_lifecycle(uri, tiers, client=client) if tiers is not None else None
    return result, rule


def _command(args: argparse.Namespace) -> int:
    tiers = None if args.no_tiers else Tiers(args.ia_days, args.archive_days, args.archive_class)
    result, rule = publish(
        Path(args.model_dir),
        args.uri,
        tiers=tiers,
        client=make_client(args.endpoint_url),
        require_manifest=not args.allow_no_manifest,
    )
    print(f"publish: {len(result.uploaded)} uploaded, {len(result.skipped)} unchanged -> {args.uri}")
    if rule is not None:
        steps = ", ".join(f"{t['StorageClass']} after {t['Days']} days" for t in rule["Transitions"])
        print(f"publish: lifecycle rule {rule['ID']}: STANDARD, then {steps}")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("publish", help="upload a model folder to S3 with checksums and storage tiers")
    p.add_argument("model_dir")
    p.add_argument("uri", help="s3://bucket/prefix")
    p.add_argument("--ia-days", type=int, default=30, help="days in STANDARD before STANDARD_IA (>= 30)")
    p.add_argument("--archive-days", type=int, default=90, help="days before the archive class (>= ia-days + 30)")
    p.add_argument("--archive-class", choices=("GLACIER", "DEEP_ARCHIVE", "GLACIER_IR"), default="GLACIER")
    p.add_argument("--no-tiers", action="store_true", help="leave the bucket's lifecycle rules alone")
    p.add_argument("--endpoint-url", default=None, help="S3-compatible endpoint (default: boto3's configuration)")
    p.add_argument("--allow-no-manifest", action="store_true", help="publish a folder without manifest.json")
    p.set_defaults(func=_command)
