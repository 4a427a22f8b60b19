"""The bill of a trace, projected by simulating the endpoint and its workers (pure).

A discrete-event simulation (one heap of timed events, no per-second stepping)
of what `devtools.platform` and the worker (`handler/`) do with a trace, so
that a bill measured by a replay on the local platform can be projected to a
month, to other settings and to any GPU price. What is modelled:

Endpoint (devtools.platform): jobs wait in one FIFO queue. The scaler is the
platform's own (`devtools.platform.scaler`: QUEUE_DELAY or REQUEST_COUNT,
`workers_min`..`workers_max`), asked after every event. A started worker is
billed from its start until its exit. It is `initializing` until it first asks
for jobs, then `running` while it holds at least one job and `idle` otherwise.
An idle worker is stopped once it has been idle `idle_timeout` seconds with
the queue empty (keeping `workers_min`); its exit takes `exit_s`, billed idle.
Jobs go to the worker whose job-take has waited longest (the platform answers
long-polls in order, and a poll is renewed every `Limits.take_hold` seconds).

Worker (handler): `boot_s` from its start until it asks for jobs (container
and process start). ENGINE_START=lazy: the first cache miss starts the engine
(`engine_start_s`); misses wait for it while the worker holds them (running).
boot: the engine starts first and the worker asks for jobs once it is ready
(initializing all along). background: the worker asks for jobs at once and the
engine starts beside. A worker takes at most `cold_concurrency` jobs while its
engine is not ready and `concurrency` once it is; as in the runpod SDK, the new
limit applies once the worker holds no job (the SDK resizes its job queue only
when empty). A miss takes `request_floor_s + tokens / tokens_per_second` once
the engine is ready (tokens: `max_tokens` x `n`; a batch job, the sum of its
items), times `1 + batch_slowdown` per other job generating when it starts.

Cache (`cache`, the shared Redis): a request tagged deterministic whose input
was answered within `cache_ttl` seconds, on any worker, is a hit: `hit_s`, no
engine. Identical deterministic requests in flight at once wait for the first
(single flight) and are hits `hit_s` after it. Job options are followed:
`cache.bypass` (no cache), `cache.refresh` (no read), `cache.ttl`.

Seconds are split by ledger state (initializing, idle, running) and by kind:
`engine_start` while a worker's engine is starting (whatever its state), else
`boot` (initializing), `jobs` (running) or `idle`. Both billing readings are
available: start-up billed (every second) and Initializing unbilled.

Not modelled: the SDK's polling delays (a full worker looks for work again
within 1 s; a resize waits for a 1 s tick), the platform's 50 ms tick, HTTP
overheads, engine or worker failures, execution timeouts, the engine's own
idle stop (IDLE_TIMEOUT), the daily budget refusing work, answers shorter than
`max_tokens` (measure `tokens_per_second` on real answers: it absorbs them).
"""

from __future__ import annotations

import heapq
import itertools
import math
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from functools import partial
from typing import Any

from client.errors import TraceError
from client.planning import DAYS_PER_MONTH
from client.replay.summary import percentile
from client.replay.trace import TraceEvent, request_key
from core.money import cost_usd
from devtools.platform.config import SCALER_TYPES, Limits
from devtools.platform.ledger import STATES, billed
from devtools.platform.scaler import ScaleState, idle_to_stop, to_start

KINDS = ("boot", "engine_start", "jobs", "idle")
ENGINE_STARTS = ("lazy", "boot", "background")
DAY_S = 86_400.0
TAKE_HOLD_S = Limits().take_hold  # a job-take long-poll is renewed this often (it orders idle workers)
SCALER_MEMORY = 100_000  # scaler answers remembered at most
EPS = 1e-9  # timers fire at their exact time: float sums must not make them miss it
# what a replay's measured summary may set (other keys of the summary are ignored)
MEASURED_KEYS = (
    "boot_s", "engine_start_s", "start_contention", "tokens_per_second", "request_floor_s", "hit_s", "exit_s",
)  # fmt: skip


@dataclass(frozen=True)
class WorkerModel:
    """The worker's and the endpoint's settings and timings; defaults are the worker's and RunPod's."""

    # the worker's timings
    boot_s: float = 3.0  # container + process start, until the worker asks for jobs
    engine_start_s: float = 45.0  # one engine starting alone
    # an engine start is (1 + start_contention x others) times longer when `others` engines are starting at
    # its start: 0 on RunPod (a GPU per worker); measured on the local platform, whose workers share the CPU
    start_contention: float = 0.0
    tokens_per_second: float = 20.0  # one request's pace
    request_floor_s: float = 0.3  # a miss's fixed cost beyond its tokens
    hit_s: float = 0.05  # a cache hit, start to answer
    exit_s: float = 1.0  # SIGTERM to exit, billed idle
    batch_slowdown: float = 0.0  # a miss is this much slower per other job generating beside it
    default_max_tokens: int = 256  # DEFAULT_MAX_TOKENS: for requests that give none
    # the worker's settings (handler/settings.py)
    engine_start: str = "lazy"  # ENGINE_START
    concurrency: int = 64  # MAX_CONCURRENCY
    cold_concurrency: int = 4  # COLD_CONCURRENCY
    cache: bool = True  # CACHE_ENABLED (the frugal set-up; a baseline runs without)
    cache_ttl: float = 86_400.0  # CACHE_TTL
    # the endpoint's settings (RunPod's defaults)
    idle_timeout: float = 5.0
    workers_min: int = 0
    workers_max: int = 3
    scaler: str = "QUEUE_DELAY"
    scaler_value: float = 4.0

    def __post_init__(self) -> None:
        for name in ("boot_s", "engine_start_s", "start_contention", "request_floor_s", "hit_s", "exit_s",
                     "batch_slowdown", "idle_timeout"):  # fmt: skip
            _check_number(name, getattr(self, name), low=0.0)
        _check_number("tokens_per_second", self.tokens_per_second, low=0.0, open_low=True)
        _check_number("cache_ttl", self.cache_ttl, low=0.0, open_low=True)
        _check_number("scaler_value", self.scaler_value, low=1.0)
        for name in ("default_max_tokens", "concurrency", "cold_concurrency", "workers_max"):
            _check_int(name, getattr(self, name), low=1)
        _check_int("workers_min", self.workers_min, low=0)
        if self.workers_min > self.workers_max:
            raise ValueError(f"workers_min ({self.workers_min}) must be <= workers_max ({self.workers_max})")
        if self.engine_start not in ENGINE_STARTS:
            raise ValueError(f"engine_start must be one of {', '.join(ENGINE_STARTS)}, got {self.engine_start!r}")
        if self.scaler not in SCALER_TYPES:
            raise ValueError(f"scaler must be one of {', '.join(SCALER_TYPES)}, got {self.scaler!r}")
        if not isinstance(self.cache, bool):
            raise ValueError(f"cache must be true or false, got {self.cache!r}")

    @classmethod
    def from_measured(cls, measured: Mapping[str, Any], **overrides: Any) -> WorkerModel:
        """A model from a replay's measured figures (`MEASURED_KEYS`; others are ignored), then `overrides`."""
        values = {key: measured[key] for key in MEASURED_KEYS if measured.get(key) is not None}
        return cls(**{**values, **overrides})

    def replace(self, **changes: Any) -> WorkerModel:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def cold_limit(self) -> int:
        """Jobs a worker takes while its engine is not ready (the app never allows more than MAX_CONCURRENCY)."""
        return min(self.cold_concurrency, self.concurrency)


def _check_number(name: str, value: object, *, low: float, open_low: bool = False) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < low
        or (open_low and value == low)
    ):
        bound = f"> {low:g}" if open_low else f">= {low:g}"
        raise ValueError(f"{name} must be a number {bound}, got {value!r}")


def _check_int(name: str, value: object, *, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")


@dataclass(frozen=True)
class Projection:
    """What serving a trace costs. Counts are floats: `scaled` projections are not whole numbers."""

    requests: float
    hits: float  # answered from the cache (single-flight waiters included)
    misses: float  # answered by an engine
    workers_started: float  # cold starts
    engine_starts: float
    seconds_by_kind: dict[str, float]  # boot, engine_start, jobs, idle
    seconds_by_state: dict[str, float]  # initializing, idle, running (the ledger's states)
    latency_p50: float  # seconds from arrival to answer (not scaled)
    latency_p95: float
    latency_p99: float
    factor: float = 1.0  # how much the simulated figures were scaled

    @property
    def hit_rate(self) -> float:
        return self.hits / self.requests if self.requests else 0.0

    def billed_seconds(self, include_initializing: bool = True) -> float:
        """Worker-seconds billed: all (start-up billed), or without `initializing` (Initializing unbilled)."""
        return billed(self.seconds_by_state, include_initializing)

    def bill_usd(self, hourly_rate: float, include_initializing: bool = True) -> float:
        _check_number("hourly_rate", hourly_rate, low=0.0)
        return cost_usd(self.billed_seconds(include_initializing), hourly_rate)

    def scaled(self, factor: float) -> Projection:
        """Every total times `factor` (latencies unchanged): a trace's bill over more or fewer days."""
        _check_number("factor", factor, low=0.0, open_low=True)
        return replace(
            self,
            requests=self.requests * factor,
            hits=self.hits * factor,
            misses=self.misses * factor,
            workers_started=self.workers_started * factor,
            engine_starts=self.engine_starts * factor,
            seconds_by_kind={k: v * factor for k, v in self.seconds_by_kind.items()},
            seconds_by_state={k: v * factor for k, v in self.seconds_by_state.items()},
            factor=self.factor * factor,
        )

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["hit_rate"] = self.hit_rate
        out["billed_seconds"] = {
            "with_initializing": self.billed_seconds(True),
            "without_initializing": self.billed_seconds(False),
        }
        return out


# ---------------------------------------------------------------- requests


@dataclass(frozen=True)
class _Request:
    """What the simulation needs of one trace event."""

    at: float
    tokens: int
    key: bytes | None  # None: not answered from nor written to the cache
    reads_cache: bool
    ttl: float


def request_tokens(job_input: Mapping[str, Any], default_max_tokens: int, where: str = "request") -> int:
    """Tokens a request may generate: max_tokens x n (sampling_params, or openai_input); a batch, its items' sum."""
    items = job_input.get("requests")
    if isinstance(items, list):
        return sum(
            request_tokens(item, default_max_tokens, f"{where} item {i + 1}")
            for i, item in enumerate(items)
            if isinstance(item, Mapping)
        )
    params = job_input.get("sampling_params", job_input.get("openai_input"))
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise TraceError(f"{where}: sampling_params must be an object, got {type(params).__name__}")
    max_tokens = params.get("max_tokens")
    tokens = _whole(default_max_tokens if max_tokens is None else max_tokens, f"{where}: max_tokens")
    return tokens * _whole(params.get("n", 1), f"{where}: n")


def _whole(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise TraceError(f"{what} must be a whole number >= 1, got {value!r}")
    return value


def _request(event: TraceEvent, model: WorkerModel, where: str) -> _Request:
    job = event.input
    raw = job.get("cache")
    options: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    cacheable = model.cache and event.deterministic and not options.get("bypass") and "requests" not in job
    ttl = options.get("ttl", model.cache_ttl)
    if cacheable:
        _check_number(f"{where}: cache.ttl", ttl, low=0.0, open_low=True)
    return _Request(
        at=event.at,
        tokens=request_tokens(job, model.default_max_tokens, where),
        key=request_key(event) if cacheable else None,
        reads_cache=not options.get("refresh"),
        ttl=float(ttl) if cacheable else 0.0,
    )


# ---------------------------------------------------------------- the simulation


class _Job:
    __slots__ = ("done", "generating", "index", "leads", "req", "worker")

    def __init__(self, index: int, req: _Request) -> None:
        self.index = index
        self.req = req
        self.worker: _Worker | None = None
        self.generating = False  # on the engine (counts for batch_slowdown)
        self.leads = False  # the single-flight leader of its key
        self.done: float | None = None


class _Worker:
    __slots__ = ("asked_at", "cap", "engine", "exited", "generating", "held", "idle_since", "last_t", "name",
                 "ready", "state", "stopping", "waiting")  # fmt: skip

    def __init__(self, name: str, now: float) -> None:
        self.name = name
        self.last_t = now  # seconds are counted up to here
        self.state = "initializing"
        self.engine = "cold"  # cold | starting | ready | stopped
        self.ready = False  # has asked for jobs
        self.asked_at = now  # when its current job-take began
        self.cap = 0  # jobs it takes at most (the SDK's job queue size)
        self.held = 0
        self.generating = 0
        self.waiting: list[_Job] = []  # misses waiting for the engine
        self.idle_since: float | None = None
        self.stopping = False
        self.exited = False

    @property
    def kind(self) -> str:
        if self.engine == "starting":
            return "engine_start"
        return {"initializing": "boot", "running": "jobs"}.get(self.state, "idle")


Event = Callable[[], None]


class _Simulation:
    def __init__(self, requests: Sequence[_Request], model: WorkerModel) -> None:
        self.m = model
        self.jobs = [_Job(i, r) for i, r in enumerate(requests)]
        self.ats = [r.at for r in requests]
        self.head = 0  # the queue: jobs[head:arrived], oldest first
        self.arrived = 0
        self.now = 0.0
        self.heap: list[tuple[float, int, Event]] = []
        self.seq = itertools.count()
        self.live: list[_Worker] = []  # started and not exited
        self.started = 0
        self.engine_starts = 0
        self.starting = 0  # engines starting now
        self.in_progress = 0
        self.hits = 0
        self.cache: dict[bytes, float] = {}  # key -> expiry
        self.flights: dict[bytes, list[_Job]] = {}  # key -> waiters for its leader
        self.by_state = dict.fromkeys(STATES, 0.0)
        self.by_kind = dict.fromkeys(KINDS, 0.0)
        self.scaler_answers: dict[tuple[int, int, int, int, int], int] = {}

    def at(self, t: float, event: Event) -> None:
        heapq.heappush(self.heap, (t, next(self.seq), event))

    def run(self, horizon: float) -> None:
        """Every event in time order; then workers still alive (workers_min) are billed up to `horizon`."""
        self.step()
        n = len(self.jobs)
        while self.heap or self.arrived < n:
            if self.heap and (self.arrived >= n or self.heap[0][0] <= self.ats[self.arrived]):
                self.now, _, event = heapq.heappop(self.heap)
                event()
            else:
                self.now = self.ats[self.arrived]
                self.arrive()
            self.step()
        self.now = max(self.now, horizon)
        for worker in self.live:
            self.settle(worker)

    # ------------------------------------------------------------ accounting
    def settle(self, w: _Worker) -> None:
        """Count the worker's seconds since the last change; call before changing its state or engine."""
        dt = self.now - w.last_t
        if dt > 0:
            self.by_state[w.state] += dt
            self.by_kind[w.kind] += dt
        w.last_t = self.now

    def set_state(self, w: _Worker, state: str) -> None:
        self.settle(w)
        w.state = state
        w.idle_since = self.now if state == "idle" and not w.stopping else None
        if w.idle_since is not None:
            self.at(self.now + self.m.idle_timeout, _nothing)  # the control step then sees it expire

    def set_engine(self, w: _Worker, engine: str) -> None:
        self.settle(w)
        w.engine = engine

    # ------------------------------------------------------------ the endpoint
    def arrive(self) -> None:
        job = self.jobs[self.arrived]
        self.arrived += 1
        self.dispatch()
        if self.m.scaler == "QUEUE_DELAY" and self.head <= job.index:  # still queued: overdue later
            self.at(job.req.at + self.m.scaler_value, _nothing)

    def step(self) -> None:
        """The platform's control pass: hand queued jobs to workers, stop idle ones, start what the scaler asks."""
        self.dispatch()
        active = [w for w in self.live if not w.stopping]
        if self.head == self.arrived and self.idle_expired(active):
            idle = {w.name: w.idle_since for w in active if w.idle_since is not None}
            stop = set(idle_to_stop(idle, self.now + EPS, self.m.idle_timeout, len(active), self.m.workers_min))
            for w in (w for w in active if w.name in stop):
                self.stop(w)
            active = [w for w in active if not w.stopping]
        for _ in range(min(self.to_start(active), self.m.workers_max - len(active))):
            self.spawn()

    def idle_expired(self, active: list[_Worker]) -> bool:
        """Whether any worker has been idle `idle_timeout` seconds (else `idle_to_stop` would stop none)."""
        due = self.now + EPS - self.m.idle_timeout
        return any(w.idle_since is not None and w.idle_since <= due for w in active)

    def to_start(self, active: list[_Worker]) -> int:
        """The scaler's answer (a pure function of these counts: remembered by them, for speed)."""
        counts = (self.arrived - self.head, self.overdue(), self.in_progress, len(active))
        initializing = sum(1 for w in active if not w.ready)
        key = (*counts, initializing)
        answer = self.scaler_answers.get(key)
        if answer is None:
            if len(self.scaler_answers) > SCALER_MEMORY:
                self.scaler_answers.clear()
            state = ScaleState(self.m.scaler, self.m.scaler_value, self.m.workers_min, self.m.workers_max, *key)
            answer = self.scaler_answers[key] = to_start(state)
        return answer

    def overdue(self) -> int:
        """Queued jobs that waited at least `scaler_value` seconds."""
        cutoff = self.now - self.m.scaler_value + EPS
        return max(0, bisect_right(self.ats, cutoff, self.head, self.arrived) - self.head)

    def dispatch(self) -> None:
        """Queued jobs to the workers with room, the one whose job-take waited longest first."""
        while self.head < self.arrived:
            takers = [(self.take_began(w), i, w) for i, w in enumerate(self.live) if self.room(w) > 0]
            if not takers:
                return
            _, _, w = min(takers)
            count = min(self.room(w), self.arrived - self.head)
            taken = self.jobs[self.head : self.head + count]
            self.head += count
            self.take(w, taken)

    def take_began(self, w: _Worker) -> float:
        """When the worker's current long-poll began (renewed every TAKE_HOLD_S while nothing comes)."""
        return w.asked_at + TAKE_HOLD_S * math.floor((self.now - w.asked_at) / TAKE_HOLD_S)

    def room(self, w: _Worker) -> int:
        """Jobs the worker would take now; a new limit (engine ready) applies once it holds none."""
        if not w.ready or w.stopping:
            return 0
        limit = self.m.concurrency if w.engine == "ready" else self.m.cold_limit
        if w.cap != limit:
            if w.held:
                return 0
            w.cap = limit
        return w.cap - w.held

    def spawn(self) -> None:
        self.started += 1
        w = _Worker(f"w{self.started}", self.now)
        self.live.append(w)
        self.at(self.now + self.m.boot_s, partial(self.booted, w))

    def stop(self, w: _Worker) -> None:
        """SIGTERM to an idle worker: an engine still starting is killed; the exit is billed idle."""
        self.settle(w)
        w.stopping, w.idle_since = True, None
        if w.engine == "starting":
            w.engine = "stopped"
            self.starting -= 1
        self.at(self.now + self.m.exit_s, partial(self.exited, w))

    def exited(self, w: _Worker) -> None:
        self.settle(w)
        w.exited = True
        self.live.remove(w)

    # ------------------------------------------------------------ the worker
    def booted(self, w: _Worker) -> None:
        """The process runs: it asks for jobs (lazy, background) or starts the engine first (boot)."""
        if self.m.engine_start != "boot":
            self.asks(w)
        if self.m.engine_start != "lazy":
            self.start_engine(w)

    def asks(self, w: _Worker) -> None:
        w.ready, w.asked_at = True, self.now
        self.set_state(w, "idle")

    def start_engine(self, w: _Worker) -> None:
        self.set_engine(w, "starting")
        self.engine_starts += 1
        seconds = self.m.engine_start_s * (1 + self.m.start_contention * self.starting)
        self.starting += 1
        self.at(self.now + seconds, partial(self.engine_ready, w))

    def engine_ready(self, w: _Worker) -> None:
        if w.engine != "starting":  # killed by a stop
            return
        self.starting -= 1
        self.set_engine(w, "ready")
        if not w.ready:  # ENGINE_START=boot
            self.asks(w)
        waiting, w.waiting = w.waiting, []
        others = w.generating + len(waiting) - 1
        for job in waiting:
            self.generate(w, job, others)

    def take(self, w: _Worker, jobs: list[_Job]) -> None:
        self.set_state(w, "running")
        w.held += len(jobs)
        self.in_progress += len(jobs)
        w.asked_at = self.now  # the next job-take begins now
        for job in jobs:
            job.worker = w
            self.serve(w, job)

    def serve(self, w: _Worker, job: _Job) -> None:
        """A hit answers at once, a waiter follows its leader, a miss needs the engine."""
        key = job.req.key
        if key is not None and job.req.reads_cache and self.cache.get(key, -math.inf) > self.now:
            self.hits += 1
            self.at(self.now + self.m.hit_s, partial(self.done, job))
            return
        if key is not None and key in self.flights:
            self.hits += 1
            self.flights[key].append(job)
            return
        if key is not None:
            self.flights[key] = []
            job.leads = True
        if w.engine == "ready":
            self.generate(w, job, w.generating)
            return
        if w.engine == "cold":
            self.start_engine(w)
        w.waiting.append(job)

    def generate(self, w: _Worker, job: _Job, others: int) -> None:
        seconds = self.m.request_floor_s + job.req.tokens / self.m.tokens_per_second
        w.generating += 1
        job.generating = True
        self.at(self.now + seconds * (1 + self.m.batch_slowdown * others), partial(self.done, job))

    def done(self, job: _Job) -> None:
        w = job.worker
        assert w is not None
        job.done = self.now
        if job.generating:
            w.generating -= 1
        if job.leads and job.req.key is not None:
            self.cache[job.req.key] = self.now + job.req.ttl
            for waiter in self.flights.pop(job.req.key):
                self.at(self.now + self.m.hit_s, partial(self.done, waiter))
        if w.held == w.cap:  # a full worker asks again
            w.asked_at = self.now
        w.held -= 1
        self.in_progress -= 1
        if not w.held:
            self.set_state(w, "idle")


def _nothing() -> None:
    """A timer: an idle timeout or a queue delay expires (the control step after it acts)."""


def _requests(events: Sequence[TraceEvent], model: WorkerModel) -> list[_Request]:
    if not events:
        raise TraceError("the trace has no events")
    out: list[_Request] = []
    for i, event in enumerate(events):
        where = f"trace event {i + 1}"
        if not isinstance(event, TraceEvent):
            raise TraceError(f"{where}: expected a TraceEvent, got {type(event).__name__}")
        if out and event.at < out[-1].at:
            raise TraceError(f"{where}: 'at' {event.at:g} is before the previous event's {out[-1].at:g}")
        out.append(_request(event, model, where))
    return out


def project(events: Sequence[TraceEvent], model: WorkerModel, *, horizon_s: float = 0.0) -> Projection:
    """Simulate the trace from time 0 until every job is answered and every worker has stopped.

    Workers kept by `workers_min` never stop: they are billed up to `horizon_s` (or the last event).
    """
    _check_number("horizon_s", horizon_s, low=0.0)
    sim = _Simulation(_requests(events, model), model)
    sim.run(horizon_s)
    latencies = sorted(job.done - job.req.at for job in sim.jobs if job.done is not None)
    return Projection(
        requests=float(len(sim.jobs)),
        hits=float(sim.hits),
        misses=float(len(sim.jobs) - sim.hits),
        workers_started=float(sim.started),
        engine_starts=float(sim.engine_starts),
        seconds_by_kind=sim.by_kind,
        seconds_by_state=sim.by_state,
        latency_p50=percentile(latencies, 50),
        latency_p95=percentile(latencies, 95),
        latency_p99=percentile(latencies, 99),
    )


def trace_days_of(events: Sequence[TraceEvent]) -> int:
    """The days of traffic a trace holds when nobody says: its span rounded up to whole days, at least one.

    A trace of a few hours counts as one day's traffic; a time-compressed trace
    (client.replay.profiles) spans less than the days it stands for: give those.
    """
    last = max((e.at for e in events), default=0.0)
    return max(1, math.ceil(last / DAY_S))


def project_month(
    events: Sequence[TraceEvent], model: WorkerModel, trace_days: float, *, days: int = DAYS_PER_MONTH
) -> Projection:
    """The trace's projection scaled from the `trace_days` of traffic it holds to `days` (a month).

    Scaling is linear: it assumes the trace is representative of every day of
    the month (the same traffic, the same cold starts per day).
    """
    _check_number("trace_days", trace_days, low=0.0, open_low=True)
    _check_int("days", days, low=1)
    return project(events, model, horizon_s=trace_days * DAY_S).scaled(days / trace_days)
