"""The figures of one replayed configuration, from the platform's ledger and the answers (pure).

The bill is the ledger's: every worker's seconds from its start to its exit, by
state (initializing, idle, running), priced at the GPU's hourly rate under both
start-up rules (start-up billed; Initializing unbilled). The worker's own split
(boot, engine start, jobs, idle) is what the shared budget counted: the workers
price a second at $1 (GPU_HOURLY_RATE=3600) during a replay, so its dollars are
seconds.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from client.replay.trace import TraceEvent, request_key
from core.money import cost_usd
from devtools.platform.ledger import billed

RULES = ("startup_billed", "initializing_unbilled")
SPLIT = ("boot", "engine_start", "jobs", "idle")


@dataclass(frozen=True)
class JobRecord:
    """One trace event as the caller saw it (times: seconds from the replay's start)."""

    index: int
    at: float
    submitted: float
    finished: float
    status: str  # COMPLETED, FAILED, TIMED_OUT, ... or "lost" (no answer)
    answer: dict[str, Any] | None = None  # the worker's answer (the last piece of the generator's aggregate)
    error_type: str | None = None
    worker_id: str | None = None  # the worker that answered (the platform's `workerId`)
    execution_s: float | None = None  # the platform's `executionTime`: from the worker's take to its answer

    @property
    def latency(self) -> float:
        return self.finished - self.at


@dataclass(frozen=True)
class WorkerLine:
    """One worker from the ledger: its life on the replay's clock and its seconds by state."""

    worker_id: str
    spawned: float
    ready: float | None
    exited: float | None
    seconds: dict[str, float]
    jobs_taken: int
    stop_reason: str | None
    stopped: float | None = None  # when the platform asked it to stop (SIGTERM)
    engine_starts: tuple[float, ...] = ()  # seconds of each engine start its log reports


@dataclass(frozen=True)
class RunSummary:
    name: str
    hourly_rate: float
    workers: list[WorkerLine]
    jobs: list[JobRecord]
    budget_seconds: dict[str, float]  # the worker's split: boot, engine_start, jobs, idle
    budget_counts_initializing: bool
    config: dict[str, Any] = field(default_factory=dict)

    # --- the bill (ledger) ----------------------------------------------------------
    def state_seconds(self) -> dict[str, float]:
        out = {"initializing": 0.0, "idle": 0.0, "running": 0.0}
        for worker in self.workers:
            for state, seconds in worker.seconds.items():
                out[state] = out.get(state, 0.0) + seconds
        return out

    def billed_seconds(self, rule: str) -> float:
        if rule not in RULES:
            raise ValueError(f"rule {rule!r}: one of {', '.join(RULES)}")
        return billed(self.state_seconds(), rule == "startup_billed")

    def bill_usd(self, rule: str) -> float:
        return cost_usd(self.billed_seconds(rule), self.hourly_rate)

    # --- the worker's count ---------------------------------------------------------
    def budget_spent_seconds(self) -> float:
        return sum(self.budget_seconds.get(k, 0.0) for k in SPLIT)

    def budget_over_bill(self) -> float:
        """What the budget counted over what the ledger billed, under the rule the workers counted by."""
        rule = "startup_billed" if self.budget_counts_initializing else "initializing_unbilled"
        billed = self.billed_seconds(rule)
        return self.budget_spent_seconds() / billed if billed else math.nan

    # --- the callers' view ------------------------------------------------------------
    def answered(self) -> list[JobRecord]:
        return [j for j in self.jobs if j.status == "COMPLETED" and j.answer is not None]

    def hit_rate(self) -> float:
        answered = self.answered()
        return sum(bool(j.answer and j.answer.get("cached")) for j in answered) / len(answered) if answered else 0.0

    def failures(self) -> dict[str, int]:
        return dict(Counter(j.error_type or j.status for j in self.jobs if j.status != "COMPLETED"))

    def latency(self) -> dict[str, float]:
        values = sorted(j.latency for j in self.answered())
        return {f"p{q}": percentile(values, q) for q in (50, 95, 99)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "config": self.config,
            "hourly_rate": self.hourly_rate,
            "bill_usd": {rule: self.bill_usd(rule) for rule in RULES},
            "billed_seconds": {rule: self.billed_seconds(rule) for rule in RULES},
            "state_seconds": self.state_seconds(),
            "worker_seconds": {k: self.budget_seconds.get(k, 0.0) for k in SPLIT},
            "budget_spent_seconds": self.budget_spent_seconds(),
            "budget_over_bill": self.budget_over_bill(),
            "cold_starts": len(self.workers),
            "jobs": len(self.jobs),
            "answered": len(self.answered()),
            "failures": self.failures(),
            "hit_rate": self.hit_rate(),
            "latency_s": self.latency(),
            "workers": [asdict(w) for w in self.workers],
        }


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (nan when there are none)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return float(sorted_values[rank - 1])


def answer_of(output: Any) -> dict[str, Any] | None:
    """The worker's answer in a job's output: the generator handler's aggregate is a list of
    pieces whose last one is the answer; the plain handler's output is the answer."""
    if isinstance(output, list):
        output = output[-1] if output else None
    return output if isinstance(output, dict) else None


def text_of(answer: Mapping[str, Any]) -> str | None:
    text = answer.get("text")
    if isinstance(text, str):
        return text
    choices = answer.get("choices")  # the OpenAI routes
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        first = choices[0]
        message = first.get("message")
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            return str(message["content"])
        if isinstance(first.get("text"), str):
            return str(first["text"])
    return None


def answer_mismatches(events: Sequence[TraceEvent], runs: Sequence[RunSummary]) -> list[str]:
    """Deterministic requests whose answers differ, within one configuration or across them."""
    texts: dict[bytes, dict[str, set[str]]] = {}
    first_index: dict[bytes, int] = {}
    for run in runs:
        for job in run.answered():
            event = events[job.index]
            text = text_of(job.answer or {})
            if not event.deterministic or text is None:
                continue
            key = request_key(event)
            first_index.setdefault(key, job.index)
            texts.setdefault(key, {}).setdefault(run.name, set()).add(text)
    problems = []
    for key, by_run in texts.items():
        distinct = set().union(*by_run.values())
        if len(distinct) > 1:
            shown = "; ".join(f"{name}: {sorted(found)!r}"[:200] for name, found in by_run.items())
            problems.append(f"request #{first_index[key]} got {len(distinct)} different answers ({shown})")
    return problems
