"""The bill as a table (one line per worker, then the endpoint's totals under both readings) or as JSON."""

from __future__ import annotations

import json
from typing import Any

COLUMNS = ("worker", "pid", "init s", "idle s", "running s", "billed s", "jobs", "stopped by", "exit")


def _row(entry: dict[str, Any]) -> list[str]:
    s = entry["seconds"]
    return [
        entry["worker_id"],
        str(entry["pid"] or "-"),
        f"{s['initializing']:.2f}",
        f"{s['idle']:.2f}",
        f"{s['running']:.2f}",
        f"{entry['lifetime_seconds']:.2f}",
        str(entry["jobs_taken"]),
        entry["stop_reason"] or ("(alive)" if entry["exited_at"] is None else "(own exit)"),
        "-" if entry["exit_code"] is None else str(entry["exit_code"]),
    ]


def endpoint_table(bill: dict[str, Any]) -> str:
    rows = [list(COLUMNS), *(_row(e) for e in bill["ledger"])]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = [f"endpoint {bill['endpoint']}: {bill['workers']} workers at ${bill['gpu_hourly_rate']:.4f}/h"]
    lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    s = bill["seconds"]
    lines.append(f"  seconds: initializing {s['initializing']:.2f}, idle {s['idle']:.2f}, running {s['running']:.2f}")
    for name, label in (("with_initializing", "initializing billed"), ("without_initializing", "initializing free")):
        r = bill["readings"][name]
        mark = " <- this endpoint's reading" if (name == "with_initializing") == bill["bill_initializing"] else ""
        lines.append(
            f"  {label:<20} {r['billed_seconds']:9.2f} s ({r['billed_seconds_rounded']:.0f} s rounded up per worker)"
            f"  ${r['usd']:.6f}{mark}"
        )
    return "\n".join(lines)


def render(bills: dict[str, Any], *, as_json: bool) -> str:
    if as_json:
        return json.dumps(bills, indent=2)
    return "\n\n".join(endpoint_table(bill) for bill in bills["endpoints"])
