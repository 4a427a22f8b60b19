"""Model-folder helpers shared by the builder's commands: atomic output, the files vLLM reads,
and the config keys older transformers versions need."""

from __future__ import annotations

import fnmatch
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from builder.errors import OutputError

# What vLLM (and transformers' tokenizer) read from a model folder. Used as the hub's
# allow_patterns and to pick files out of a local folder.
VLLM_FILE_PATTERNS: tuple[str, ...] = (
    "*.json",
    "*.safetensors",
    "*.jinja",
    "tokenizer.model",
    "*.tiktoken",
    "merges.txt",
    "vocab.txt",
)


def wanted_by_vllm(relative_path: str) -> bool:
    """True when a file (path relative to the model folder) is one vLLM needs."""
    parts = relative_path.split("/")
    name = parts[-1]
    if name == "manifest.json" or any(part.startswith(".") for part in parts):
        return False
    return any(fnmatch.fnmatch(name, pattern) for pattern in VLLM_FILE_PATTERNS)


def staging_dir(out: Path) -> Path:
    """The sibling folder a command writes into before it becomes `out` (kept for resuming)."""
    return out.parent / f".{out.name}.partial"


@contextmanager
def atomic_output(out: Path, *, keep_partial: bool = False) -> Iterator[Path]:
    """Yield an empty (or, with keep_partial, resumed) staging folder; on success it replaces `out`.

    On an exception `out` is left as it was; the staging folder is removed unless keep_partial
    (a resumable download keeps what it already has).
    """
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out.parent}: {exc.strerror}") from exc
    stage = staging_dir(out)
    if stage.exists() and not keep_partial:
        shutil.rmtree(stage)
    stage.mkdir(exist_ok=True)
    try:
        yield stage
    except BaseException:
        if not keep_partial:
            shutil.rmtree(stage, ignore_errors=True)
        raise
    make_readable(stage)
    replace_dir(stage, out)


def make_readable(folder: Path) -> None:
    """Give every file in `folder` read permission for all (some writers create files 0600)."""
    for path in folder.rglob("*"):
        mode = path.stat().st_mode
        wanted = mode | (0o755 if path.is_dir() else 0o644)
        if wanted != mode:
            path.chmod(wanted)


def replace_dir(new: Path, out: Path) -> None:
    """Move `new` to `out`, replacing an existing `out` with two renames."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
        out.rename(old / "d")
    try:
        new.rename(out)
    except OSError as exc:
        if old is not None:
            (old / "d").rename(out)
        raise OutputError(f"cannot move {new} to {out}: {exc.strerror}") from exc
    if old is not None:
        shutil.rmtree(old)


def add_compat_config(folder: Path) -> None:
    """Add the keys transformers 4.x (the AWQ venv) needs to a config.json written by transformers 5.

    transformers 5 writes rope theta only inside `rope_parameters`; 4.51 then silently uses
    10000. Write `rope_theta` at the top level too, and name the tokenizer class.
    """
    path = folder / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    rope = config.get("rope_parameters")
    if "rope_theta" not in config and isinstance(rope, dict) and "rope_theta" in rope:
        config["rope_theta"] = rope["rope_theta"]
    config.setdefault("tokenizer_class", "PreTrainedTokenizerFast")
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
