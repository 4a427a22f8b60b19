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
    """Write `rows` over the rows of the same metrics already in `path` (a bench run alone keeps the others)."""
    kept: dict[str, dict[str, Any]] = {}
    if path.is_file():
        kept = {row["metric"]: row for row in orjson.loads(path.read_bytes()) if isinstance(row, dict)}
    for row in rows:
        kept[row["metric"]] = {k: row.get(k) for k in ("metric", "value", "goal", "unit")}
    path.write_bytes(orjson.dumps(list(kept.values()), option=orjson.OPT_INDENT_2))
