"""Printing and saving benchmark rows: {"metric", "value", "goal", "unit"}."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson


def print_table(rows: list[dict[str, Any]]) -> None:
    width = max((len(r["metric"]) for r in rows), default=10)
    print(f"{'metric':<{width}}  {'value':>12}  {'unit':<9} goal")
    for row in rows:
        goal = row.get("goal") or ""
        print(f"{row['metric']:<{width}}  {row['value']!s:>12}  {row['unit']:<9} {goal}")


def save(rows: list[dict[str, Any]], path: Path) -> None:
    clean = [{k: row.get(k) for k in ("metric", "value", "goal", "unit")} for row in rows]
    path.write_bytes(orjson.dumps(clean, option=orjson.OPT_INDENT_2))
