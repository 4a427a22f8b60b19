"""Plain-text tables and `--json` output, for every CLI (client, builder, handler.stats)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, numbers_right: bool = False) -> str:
    """Columns padded to their widest cell, a rule under the headers; `numbers_right`: every
    column right-aligned (tables of figures)."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def pad(cell: str, width: int) -> str:
        return cell.rjust(width) if numbers_right else cell.ljust(width)

    lines = ["  ".join(pad(c, w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def pairs(rows: Sequence[tuple[str, Any]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {_cell(v)}" for k, v in rows)


def as_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False, default=str)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.4f}".rstrip("0").rstrip(".") if abs(value) < 1 else f"{value:,.2f}"
    return str(value)
