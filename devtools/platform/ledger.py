"""The bill: every worker's states over time, and the endpoint's total at a GPU price.

A worker's billed lifetime runs from the moment the platform starts it (the
container start begins, so a configured container-start delay is billed) until
its process has exited. Within it the worker is in one state at a time:

    initializing  from the start until its first job-take request reaches the platform
    idle          ready, holding no job (this includes the idle timeout before scale-down
                  and the seconds between SIGTERM and exit of an idle worker)
    running       holding at least one job (concurrent jobs share these seconds)

so `sum(seconds.values()) == lifetime` for every worker by construction. Whether
RunPod bills `initializing` is unclear (its pricing page bills start-up, its
workers page marks Initializing unbilled since 2026-06): every total is
available under both readings. Seconds are exact (floats); `rounded` totals
round each worker's billed time up to a whole second, the conservative reading
of "billed per second".

Times are `time.monotonic()` of the platform process; `spawned_wall` is the
`time.time()` of the start, for humans.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

STATES = ("initializing", "idle", "running")


@dataclass
class WorkerTimeline:
    """One worker's state transitions; the live record the pool and the job board update."""

    worker_id: str
    spawned_at: float
    spawned_wall: float
    transitions: list[tuple[float, str]] = field(default_factory=list)
    pid: int | None = None
    process_started_at: float | None = None
    ready_at: float | None = None
    stop_requested_at: float | None = None
    stop_reason: str | None = None
    exited_at: float | None = None
    exit_code: int | None = None
    jobs_taken: int = 0

    def __post_init__(self) -> None:
        if not self.transitions:
            self.transitions.append((self.spawned_at, "initializing"))

    @property
    def state(self) -> str:
        return "exited" if self.exited_at is not None else self.transitions[-1][1]

    def enter(self, state: str, now: float) -> None:
        if self.exited_at is None and self.transitions[-1][1] != state:
            self.transitions.append((now, state))

    def close(self, now: float, exit_code: int | None) -> None:
        if self.exited_at is None:
            self.exited_at, self.exit_code = now, exit_code

    def seconds(self, now: float) -> dict[str, float]:
        end = self.exited_at if self.exited_at is not None else now
        out = dict.fromkeys(STATES, 0.0)
        for (start, state), (stop, _) in zip(self.transitions, [*self.transitions[1:], (end, "")], strict=True):
            out[state] += max(0.0, min(stop, end) - start)
        return out

    def state_at(self, t: float) -> str | None:
        """The state at monotonic time `t`, None outside the lifetime."""
        if t < self.spawned_at or (self.exited_at is not None and t >= self.exited_at):
            return None
        current = self.transitions[0][1]
        for start, state in self.transitions:
            if start > t:
                break
            current = state
        return current


def billed(seconds: dict[str, float], include_initializing: bool) -> float:
    return sum(v for k, v in seconds.items() if include_initializing or k != "initializing")


@dataclass(frozen=True)
class LedgerEntry:
    """One worker's line of the bill (a snapshot; live workers are counted up to `now`)."""

    worker_id: str
    pid: int | None
    spawned_at: float
    spawned_wall: float
    process_started_at: float | None
    ready_at: float | None
    stop_requested_at: float | None
    stop_reason: str | None
    exited_at: float | None
    exit_code: int | None
    state: str
    jobs_taken: int
    seconds: dict[str, float]
    lifetime_seconds: float
    billed_seconds: float  # under the endpoint's `bill_initializing` reading

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Ledger:
    """All workers an endpoint ever started, and their bill at `hourly_rate` USD per worker-hour."""

    def __init__(self, hourly_rate: float, bill_initializing: bool) -> None:
        self.hourly_rate = hourly_rate
        self.bill_initializing = bill_initializing
        self.timelines: dict[str, WorkerTimeline] = {}

    def open(self, worker_id: str, now: float, wall: float) -> WorkerTimeline:
        timeline = WorkerTimeline(worker_id, spawned_at=now, spawned_wall=wall)
        self.timelines[worker_id] = timeline
        return timeline

    def entries(self, now: float) -> list[LedgerEntry]:
        out = []
        for t in self.timelines.values():
            seconds = t.seconds(now)
            out.append(
                LedgerEntry(
                    worker_id=t.worker_id,
                    pid=t.pid,
                    spawned_at=t.spawned_at,
                    spawned_wall=t.spawned_wall,
                    process_started_at=t.process_started_at,
                    ready_at=t.ready_at,
                    stop_requested_at=t.stop_requested_at,
                    stop_reason=t.stop_reason,
                    exited_at=t.exited_at,
                    exit_code=t.exit_code,
                    state=t.state,
                    jobs_taken=t.jobs_taken,
                    seconds=seconds,
                    lifetime_seconds=sum(seconds.values()),
                    billed_seconds=billed(seconds, self.bill_initializing),
                )
            )
        return out

    def _reading(self, include_initializing: bool | None) -> bool:
        return self.bill_initializing if include_initializing is None else include_initializing

    def billed_seconds(self, now: float, include_initializing: bool | None = None, *, rounded: bool = False) -> float:
        reading = self._reading(include_initializing)
        per_worker = [billed(t.seconds(now), reading) for t in self.timelines.values()]
        return float(sum(math.ceil(s) for s in per_worker)) if rounded else sum(per_worker)

    def bill_usd(self, now: float, include_initializing: bool | None = None, *, rounded: bool = False) -> float:
        return self.billed_seconds(now, include_initializing, rounded=rounded) * self.hourly_rate / 3600.0

    def summary(self, now: float) -> dict[str, Any]:
        """The endpoint's totals: seconds by state, and billed seconds and USD under both readings."""
        by_state = dict.fromkeys(STATES, 0.0)
        for t in self.timelines.values():
            for state, seconds in t.seconds(now).items():
                by_state[state] += seconds
        readings = {}
        for name, include in (("with_initializing", True), ("without_initializing", False)):
            readings[name] = {
                "billed_seconds": self.billed_seconds(now, include),
                "billed_seconds_rounded": self.billed_seconds(now, include, rounded=True),
                "usd": self.bill_usd(now, include),
            }
        return {
            "workers": len(self.timelines),
            "gpu_hourly_rate": self.hourly_rate,
            "bill_initializing": self.bill_initializing,
            "seconds": by_state,
            "billed_seconds": self.billed_seconds(now),
            "usd": self.bill_usd(now),
            "readings": readings,
        }

    def timeline(self, now: float, step: float = 1.0) -> list[dict[str, Any]]:
        """Per-`step` samples from the first start: how many workers were in each state."""
        if not self.timelines:
            return []
        start = min(t.spawned_at for t in self.timelines.values())
        samples = []
        for i in range(int((now - start) / step) + 1):
            at = start + i * step
            counts = dict.fromkeys(STATES, 0)
            for t in self.timelines.values():
                state = t.state_at(at)
                if state is not None:
                    counts[state] += 1
            samples.append({"t": round(i * step, 6), **counts})
        return samples
