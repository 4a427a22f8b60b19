"""RunPod's cached models: a hub model already on the machine, served without a download.

RunPod mounts the models an endpoint caches at `/runpod-volume/huggingface-cache/hub`
in Hugging Face's cache layout, with the folder names in lower case:

    models--<org>--<name>/refs/main            the commit the cache holds for "main"
    models--<org>--<name>/snapshots/<commit>/  the model's files

`cached_snapshot` finds the snapshot folder of a hub id (matched without regard
to case) and a revision (a commit, a ref, or none: `main`, else the only snapshot).
"""

from __future__ import annotations

from pathlib import Path


def _repo_folder(hub_root: Path, model_id: str) -> Path | None:
    if model_id.count("/") != 1 or not hub_root.is_dir():
        return None
    wanted = "models--" + model_id.replace("/", "--").lower()
    for entry in hub_root.iterdir():
        if entry.is_dir() and entry.name.lower() == wanted:
            return entry
    return None


def cached_snapshot(hub_root: Path, model_id: str, revision: str = "") -> Path | None:
    """The folder holding `model_id` at `revision` in the cache under `hub_root`, or None."""
    repo = _repo_folder(hub_root, model_id)
    if repo is None:
        return None
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = repo / "refs" / (revision or "main")
    commit = ref.read_text().strip() if ref.is_file() else revision
    if commit:
        folder = snapshots / commit
        return folder if folder.is_dir() else None
    found = [entry for entry in snapshots.iterdir() if entry.is_dir()]
    return found[0] if len(found) == 1 else None
