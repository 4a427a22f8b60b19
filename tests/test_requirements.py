"""The worker's environment installs only what the worker imports (issue 16).

`requirements.txt` is the worker image's venv: every package in it is imported by `handler`
or `core`, and everything `handler` and `core` import is installed by it (directly, or as a
dependency of what it names). The builder's and the client's packages live in
requirements-builder.txt and requirements-tools.txt.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
OWN = {"handler", "core"}


def _names(path: Path) -> set[str]:
    names = set()
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.add(_canon(re.split(r"[=<>\[;~ ]", line, maxsplit=1)[0]))
    return names


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_modules() -> set[str]:
    found: set[str] = set()
    for package in sorted(OWN):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    found |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m not in OWN and m != "__future__"}


def _closure(names: set[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for spec in metadata.requires(name) or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(_canon(req.name))
    return seen


def test_the_worker_requirements_are_what_the_worker_imports() -> None:
    wanted = _names(ROOT / "requirements.txt")
    by_module = metadata.packages_distributions()
    imported = {_canon(dist) for module in _imported_modules() for dist in by_module.get(module, [module])}
    assert wanted - imported == set(), "requirements.txt names packages the worker never imports"
    missing = imported - _closure(wanted)
    assert missing == set(), f"the worker imports packages requirements.txt does not install: {missing}"


def test_the_builder_and_client_packages_stay_out_of_the_worker() -> None:
    named = _names(ROOT / "requirements.txt")
    assert named.isdisjoint({"boto3", "tqdm", "matplotlib", "tenacity"})
    # boto3 still comes with the runpod SDK, which requires it (for its upload helpers)
    assert _closure(named).isdisjoint({"matplotlib", "tenacity", "torch", "vllm"})
    assert {"boto3", "tqdm"} <= _names(ROOT / "requirements-builder.txt")
