"""`python -m builder COMMAND ...`: each command lives in its own module.

A command module exposes ``register(subparsers)``, which adds its sub-parser and
sets ``func`` (taking the parsed namespace, returning an exit code). Command
modules import their heavy dependencies (torch, boto3) inside the functions
that need them, so building the parser stays light in every environment.
A typed error (`BuilderError`, or the core's `CoreError`: a bad manifest or
price table) that a command does not report itself prints one line,
``error: ...``, and exits 1 (`core.cli`, as every CLI here reports them).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from builder.errors import BuilderError
from core.cli import FAILED, run_command
from core.errors import CoreError

COMMAND_MODULES = (
    "builder.tiny_model",
    "builder.fetch",
    "builder.quantize",
    "builder.publish",
    "builder.bake",
    "builder.warm",
    "builder.rightsize",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m builder", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # command not written yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(lambda: args.func(args), (BuilderError, CoreError), code=FAILED)


if __name__ == "__main__":
    sys.exit(main())
