"""A traffic trace: one JSON object per line, in arrival order.

    {"at": 12.5, "input": {"prompt": "...", "sampling_params": {...}}, "tags": ["repeat"]}

`at` is the arrival offset in seconds from the trace's start (>= 0, never
decreasing); `input` is the job input exactly as a caller sends it to `/run`;
`tags` (optional) are free labels. The tag `deterministic` marks requests whose
answer must be the same text in every configuration (temperature 0); the tag
`repeat` marks a request that repeats an earlier one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from client.errors import TraceError

DETERMINISTIC = "deterministic"
REPEAT = "repeat"


@dataclass(frozen=True)
class TraceEvent:
    at: float  # seconds from the trace's start
    input: dict[str, Any]
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def deterministic(self) -> bool:
        return DETERMINISTIC in self.tags

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"at": round(self.at, 6), "input": self.input}
        if self.tags:
            out["tags"] = list(self.tags)
        return out


def parse_event(obj: Any, where: str) -> TraceEvent:
    """One trace line's object; `where` names it in errors ("trace.jsonl line 3")."""
    if not isinstance(obj, dict):
        raise TraceError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - {"at", "input", "tags"})
    if unknown:
        raise TraceError(f"{where}: unknown field(s) {', '.join(unknown)} (allowed: at, input, tags)")
    at = obj.get("at")
    if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at) or at < 0:
        raise TraceError(f"{where}: 'at' must be a number of seconds >= 0, got {at!r}")
    job_input = obj.get("input")
    if not isinstance(job_input, dict) or not job_input:
        raise TraceError(f"{where}: 'input' must be a non-empty JSON object (the job input sent to /run)")
    tags = obj.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
        raise TraceError(f"{where}: 'tags' must be a list of non-empty strings")
    return TraceEvent(at=float(at), input=job_input, tags=tuple(tags))


def parse_trace(lines: Iterable[str | bytes], name: str = "trace") -> list[TraceEvent]:
    events: list[TraceEvent] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{name} line {number}"
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise TraceError(f"{where}: not JSON ({exc})") from None
        event = parse_event(obj, where)
        if events and event.at < events[-1].at:
            raise TraceError(f"{where}: 'at' {event.at:g} is before the previous line's {events[-1].at:g}")
        events.append(event)
    if not events:
        raise TraceError(f"{name}: no events")
    return events


def load_trace(path: str | Path) -> list[TraceEvent]:
    p = Path(path)
    try:
        text = p.read_bytes()
    except OSError as exc:
        raise TraceError(f"trace {p}: {exc.strerror or exc}") from None
    return parse_trace(text.splitlines(), name=str(p))


def dump_trace(events: Sequence[TraceEvent], path: str | Path) -> None:
    Path(path).write_bytes(b"".join(orjson.dumps(e.to_json()) + b"\n" for e in events))


def request_key(event: TraceEvent) -> bytes:
    """Requests that are the same request (what the determinism check groups by)."""
    return orjson.dumps(event.input, option=orjson.OPT_SORT_KEYS)
