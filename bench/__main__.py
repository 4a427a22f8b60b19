"""`python -m bench [NAME ...]`: run the benchmarks, print them, write bench/results.json.

Each `bench/<name>_bench.py` exposes `run() -> list[row]`; rows are
{"metric", "value", "goal", "unit"}. With no names, all of them run.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from bench.report import print_table, save

HERE = Path(__file__).resolve().parent
ORDER = ["worker", "hit", "cache", "engine", "platform", "cold_start"]  # cheap ones first


def main(argv: list[str]) -> int:
    found = sorted(p.stem.removesuffix("_bench") for p in HERE.glob("*_bench.py"))
    names = argv or sorted(found, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))
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
