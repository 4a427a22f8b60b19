"""`python -m bench [NAME ...]`: run the benchmarks, print them, write bench/results.json.

Each `bench/<name>_bench.py` exposes `run() -> list[row]`; rows are
{"metric", "value", "goal", "unit"}. With no names, all of them run but the
replay (`make replay`). Rows are written over the same metrics in results.json.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from bench.report import print_table, save

HERE = Path(__file__).resolve().parent
ORDER = ["worker", "hit", "cache", "engine", "platform", "cold_start"]  # cheap ones first
ALONE = {"replay", "fault"}  # run only when named (`make replay`, `python -m bench fault`): long


def main(argv: list[str]) -> int:
    found = sorted(p.stem.removesuffix("_bench") for p in HERE.glob("*_bench.py"))
    default = [n for n in found if n not in ALONE]
    names = argv or sorted(default, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))
    rows = []
    for name in names:
        print(f"== {name}", flush=True)
        module = importlib.import_module(f"bench.{name}_bench")
        part = module.run()
        print_table(part)
        rows += part
    save(rows, HERE / "results.json")
    print(f"\nwrote {HERE / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
