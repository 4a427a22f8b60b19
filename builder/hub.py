"""The Hugging Face hub boundary: repo ids, the token, and the download call (injectable).

`HubDownload` is the one call that reaches the network; `fetch` takes it as an argument so
tests pass a fake instead of patching anything. The default, `snapshot_download_fn`, imports
huggingface_hub only when called (it lives in the engine venv).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

from builder.errors import SourceError
from builder.model_files import VLLM_FILE_PATTERNS

HUB_PREFIX = "hf:"
SECRET_TOKEN_FILE = Path("/run/secrets/hf_token")
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")

# (repo_id, revision, allow_patterns, token) -> local folder holding the files
HubDownload = Callable[[str, str, list[str], str | None], Path]


def parse_hub_uri(uri: str) -> str:
    """'hf:ORG/NAME' -> 'ORG/NAME' (SourceError when malformed)."""
    repo_id = uri.removeprefix(HUB_PREFIX)
    if not uri.startswith(HUB_PREFIX) or not _REPO_ID.match(repo_id):
        raise SourceError(f"hub source {uri!r} must look like hf:ORG/NAME")
    return repo_id


def is_commit(revision: str) -> bool:
    """True for a full 40-character commit hash (a pinned, immutable revision)."""
    return bool(_COMMIT.match(revision))


def hub_token(env: Mapping[str, str], secret_file: Path = SECRET_TOKEN_FILE) -> str | None:
    """The hub token: HF_TOKEN from `env`, else the build secret file, else None (public repos)."""
    token = env.get("HF_TOKEN", "").strip()
    if token:
        return token
    try:
        token = secret_file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SourceError(f"cannot read the hub token secret {secret_file}: {exc.strerror}") from exc
    return token or None


def allow_patterns() -> list[str]:
    """The files fetched from the hub: only what vLLM reads."""
    return list(VLLM_FILE_PATTERNS)


def snapshot_download_fn(cache_dir: Path | None = None) -> HubDownload:
    """The real download: huggingface_hub.snapshot_download into the hub cache."""

    def download(repo_id: str, revision: str, patterns: list[str], token: str | None) -> Path:
        try:
            from huggingface_hub import snapshot_download
            from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
        except ImportError as exc:
            raise SourceError("huggingface_hub is not installed here: run the builder from .venv-engine") from exc

        try:
            folder = snapshot_download(
                repo_id=repo_id,
                revision=revision,
                allow_patterns=patterns,
                token=token,
                cache_dir=str(cache_dir) if cache_dir is not None else None,
            )
        except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as exc:
            raise SourceError(f"hub download of {repo_id}@{revision} failed: {exc}") from exc
        return Path(folder)

    return download
