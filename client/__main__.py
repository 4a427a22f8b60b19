"""`python -m client COMMAND ...`: cost planning (estimate, compare, plan-budget, spot), replay and deploy.

Each command module exposes ``register(subparsers)`` and sets ``func`` (the
parsed namespace in, an exit code out), as `python -m builder` does. Errors a
user can fix (a bad price file, an unknown GPU, a bad runpod.toml) print one
line, ``error: ...``, and exit 2 (`core.cli`, as every CLI here reports them).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from client.errors import ClientError
from core.cli import USAGE, run_command
from core.errors import CoreError

COMMAND_MODULES = ("client.cli_planning", "client.cli_replay", "client.deploy")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m client", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(lambda: args.func(args), (ClientError, CoreError, ValueError), code=USAGE)


if __name__ == "__main__":
    sys.exit(main())
