"""The spot-then-on-demand fallback policy, written once: every decision, no I/O.

"spot" is the cheap tier (a flex-only endpoint on the cheapest adequate GPU pools, often
cold or throttled), "on_demand" the reliable one (active workers, broader pools): RunPod
serverless sells no interruptible capacity. For one job the cheap tier gets its own
timeout, and optionally a time-to-start (`EndpointSpec.start_timeout_s`): a job still
queued past it (a cold start, or throttled workers: `/health` says which, in the
failure's message) is given up. The cheap tier also gives up on a job RunPod re-queued
after its worker died more often than `Policy.max_worker_losses`, on TIMED_OUT, 429, 5xx,
a dropped connection, an open circuit, an endpoint scaled to zero (workers max 0, read
through the management API when the driver has a reader: skipped at once, and looked at
again after the cool-down) or a worker error other than the caller's own bad input. The
cheap job is then cancelled (so it is never billed twice) and the job runs on the
reliable endpoint. The
worker's `validation_error` is raised at once as `JobRejected`: the same input
would fail anywhere, and that holds too when the job is found rejected only
when the client comes to cancel it. A job that finished before its cancel is
taken with its own outcome; a failure to read that outcome keeps its own
reason (it is not a failed cancel).

Retries (`should_retry`): status, cancel and health calls are idempotent and
are retried on 429, 5xx and connection errors with exponential backoff
(`Policy.backoff_s`), bounded by `EndpointSpec.max_attempts` and by the tier's
deadline. `POST /run` is not: each request that arrives queues a billed job,
so it is sent again only when it surely did not arrive (`connect`: no TCP
connection was made) or was refused (`throttled`, 429). Any other failure
after the request was sent (a read error, a dropped connection, a 5xx, an
answer that is not JSON or has no job id) is `submit_unknown`, never resent.

`submit_unknown` on spot falls back to on-demand when
`Policy.fallback_on_submit_unknown` (the default), and is raised at once as
that `AttemptFailed` otherwise. Falling back is the default because the spot
job carries RunPod's job policy `ttl` (`spot_ttl_ms`: the tier's budget plus
`Policy.ttl_margin_s`, within RunPod's 10 s .. 7 days): a spot job the client
lost, or failed to cancel, is deleted by RunPod at that ttl (in any state),
so the worst double bill is one spot budget plus the margin, not the
endpoint's execution timeout. A caller for whom no answer is better than
that risk sets the flag to False. On the last tier there is nothing to fall
back to: its failure, `submit_unknown` included, goes into `AllTiersFailed`.
Both tiers failing raises `AllTiersFailed` carrying both causes.

How it runs (sans-IO): `FallbackRun.steps` is a generator. It yields what it
needs done, one request at a time (`Submit`, `Status`, `Cancel`, `Health`: an
endpoint API call; `Sleep`: a wait), and is sent each call's answer, or has
the call's `AttemptFailed` thrown in; it returns the `FallbackResult` or
raises the typed error. A driver (`client.fallback.FallbackClient`, blocking;
`client.fallback_async.AsyncFallbackClient`, asyncio) only carries requests
out, through `Exchange`; it decides nothing. The clock and the circuit
breaker (in-memory state) are handed in, so a test can step a run by hand.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Generator, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Generic, TypeAlias, TypeVar

from client.breaker import CircuitBreaker
from client.endpoint_api import FINAL_STATES, AsyncEndpointAPI, EndpointAPI, outcome
from client.errors import AllTiersFailed, AttemptFailed, FailureReason, JobRejected

T = TypeVar("T")
# idempotent calls (status, cancel, health): resending one costs nothing
TRANSIENT = frozenset(
    {FailureReason.THROTTLED, FailureReason.SERVER_ERROR, FailureReason.CONNECTION, FailureReason.CONNECT}
)
# POST /run: resent only when no job can have been queued (no connection, or refused with 429)
SUBMIT_RETRYABLE = frozenset({FailureReason.CONNECT, FailureReason.THROTTLED})
# RunPod's bounds on a job's policy.ttl (queue + execution), in milliseconds
TTL_MIN_MS = 10_000
TTL_MAX_MS = 7 * 24 * 3600 * 1000
FINISHED_BEFORE_CANCEL = FINAL_STATES - {"CANCELLED"}


# ------------------------------------------------------------ settings and results
@dataclass(frozen=True)
class EndpointSpec:
    endpoint_id: str
    timeout_s: float = 120.0  # this tier's own deadline for one job
    max_attempts: int = 3  # HTTP tries per call (see `should_retry`)
    # the most a job may wait in this tier's queue before a worker takes it; None: the timeout alone
    start_timeout_s: float | None = None


@dataclass(frozen=True)
class TierPair:
    on_demand: EndpointSpec
    spot: EndpointSpec | None = None

    def legs(self) -> list[tuple[str, EndpointSpec]]:
        return ([("spot", self.spot)] if self.spot is not None else []) + [("on_demand", self.on_demand)]


@dataclass(frozen=True)
class Policy:
    no_fallback_types: frozenset[str] = frozenset({"validation_error"})
    backoff_initial_s: float = 0.25
    backoff_max_s: float = 4.0
    poll_initial_s: float = 0.1
    poll_max_s: float = 1.0
    cancel_attempts: int = 3
    # the spot job's ttl is its tier's budget plus this: time for the cancel, or for reading a
    # result that came just before it (RunPod deletes a job past its ttl, in any state)
    ttl_margin_s: float = 30.0
    # fall back to on-demand after a spot POST /run whose outcome is unknown (see the module doc)
    fallback_on_submit_unknown: bool = True
    # a job RunPod re-queued (its worker died) more often than this is given up on that tier
    max_worker_losses: int = 1

    def __post_init__(self) -> None:
        if not (math.isfinite(self.ttl_margin_s) and self.ttl_margin_s >= 0):
            raise ValueError(f"Policy.ttl_margin_s must be a finite number of seconds >= 0, got {self.ttl_margin_s!r}")

    def backoff_s(self, tries: int, uniform: Callable[[float, float], float] = random.uniform) -> float:
        """The wait after the `tries`-th failed try: `backoff_initial_s` doubled each try, plus up to one
        initial step of jitter, capped at `backoff_max_s`."""
        try:
            wait = self.backoff_initial_s * 2.0 ** (tries - 1) + uniform(0, self.backoff_initial_s)
        except OverflowError:
            wait = self.backoff_max_s
        return max(0.0, min(wait, self.backoff_max_s))


@dataclass(frozen=True)
class Attempt:
    tier: str
    endpoint_id: str
    outcome: str  # "served" or a FailureReason value
    job_id: str | None = None
    cancelled: bool = False
    seconds: float = 0.0
    message: str = ""


@dataclass(frozen=True)
class FallbackResult:
    output: Any
    tier: str  # "spot" or "on_demand"
    endpoint_id: str
    job_id: str | None
    attempts: tuple[Attempt, ...] = field(default_factory=tuple)
    route: str | None = None  # the size tier when routed (client.routing)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------ pure decisions
def failed_attempt(tier: str, exc: AttemptFailed, seconds: float) -> Attempt:
    return Attempt(tier, exc.endpoint_id, exc.reason.value, exc.job_id, exc.cancelled, round(seconds, 3), exc.message)


def tier_budget(spec: EndpointSpec, timeout: float | None, elapsed: float) -> float:
    """Seconds this tier may take: its own timeout, within what is left of the caller's."""
    return spec.timeout_s if timeout is None else min(spec.timeout_s, timeout - elapsed)


def job_ttl_ms(budget_s: float, margin_s: float) -> int:
    """RunPod's job `ttl` (ms) for a job given `budget_s` seconds, plus a margin, within RunPod's bounds."""
    seconds = budget_s + margin_s
    if not seconds * 1000 < TTL_MAX_MS:  # also infinite (or NaN) budgets
        return TTL_MAX_MS
    return max(TTL_MIN_MS, math.ceil(seconds * 1000))


def spot_ttl_ms(tier: str, budget_s: float, policy: Policy) -> int | None:
    """The ttl a tier's job carries: spot's, so a spot job lost or not cancelled cannot run (and bill) later.

    The on-demand tier is the last resort: nothing runs after it, so its job keeps the endpoint's default.
    """
    return job_ttl_ms(budget_s, policy.ttl_margin_s) if tier == "spot" else None


def should_retry(exc: BaseException, *, submit: bool) -> bool:
    """Whether a failed HTTP call may be sent again: `submit` for POST /run, which queues a billed job."""
    if not isinstance(exc, AttemptFailed):
        return False
    return exc.reason in (SUBMIT_RETRYABLE if submit else TRANSIENT)


def may_fall_back(exc: AttemptFailed, policy: Policy) -> bool:
    """Whether a failed attempt lets the next tier run: not after an unknown submit, unless the policy allows it."""
    return exc.reason != FailureReason.SUBMIT_UNKNOWN or policy.fallback_on_submit_unknown


def result_unread(failure: AttemptFailed, exc: AttemptFailed, job_id: str, status: str) -> AttemptFailed:
    """A job that finished before its cancel but whose result could not be read: the read's failure, by its reason."""
    return AttemptFailed(
        exc.endpoint_id,
        exc.reason,
        f"job {job_id} was {status} before its cancel, but reading its result failed: {exc.message} "
        f"(the attempt had failed first: {failure.reason.value}: {failure.message})",
        job_id=job_id,
    )


def still_running(endpoint_id: str, state: dict[str, Any], budget: float) -> AttemptFailed:
    status = state.get("status")
    reason = FailureReason.NO_CAPACITY if status == "IN_QUEUE" else FailureReason.TIMEOUT
    return AttemptFailed(endpoint_id, reason, f"job still {status} after {budget:.1f}s", job_id=state.get("id"))


def check_gate(spec: EndpointSpec, budget: float, last: bool, breaker: CircuitBreaker) -> None:
    """Refuse an attempt before it starts: no time left, or (except on the last tier) out of rotation."""
    if budget <= 0:
        raise AttemptFailed(spec.endpoint_id, FailureReason.TIMEOUT, "no time left of the caller's timeout")
    if not last and breaker.is_open(spec.endpoint_id):
        code = FailureReason(breaker.codes.get(spec.endpoint_id, FailureReason.CIRCUIT_OPEN.value))
        raise AttemptFailed(spec.endpoint_id, code, breaker.reasons.get(spec.endpoint_id, "out of rotation"))


def workers_max(config: dict[str, Any]) -> int | None:
    """The endpoint's workers max from its REST v2 body (`workers: {min, max}`); None: not given."""
    workers = config.get("workers")
    value = workers.get("max") if isinstance(workers, dict) else config.get("workersMax")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def queue_summary(health: dict[str, Any] | None) -> str:
    """Why a job may still be queued, from `/health`: its workers by state."""
    if not health:
        return "health unknown"
    workers = health.get("workers") or {}
    shown = ", ".join(f"{k} {workers[k]}" for k in ("throttled", "initializing", "running", "idle") if k in workers)
    throttled = int(workers.get("throttled", 0) or 0)
    usable = sum(int(workers.get(k, 0) or 0) for k in ("idle", "ready", "running", "initializing"))
    cause = "throttled workers" if throttled and not usable else "a cold start" if not usable else "busy workers"
    return f"{cause} (workers: {shown or 'none'})"


def started(state: dict[str, Any]) -> bool:
    """Whether a worker ever took the job (a re-queued job counts: its start has happened)."""
    return state.get("status") not in ("IN_QUEUE", None) or bool(state.get("retries")) or "delayTime" in state


def note_failure(breaker: CircuitBreaker, spec: EndpointSpec, exc: AttemptFailed) -> None:
    if exc.reason != FailureReason.CIRCUIT_OPEN:
        breaker.record_failure(spec.endpoint_id, exc.reason.value)


# ------------------------------------------------------------ the requests a run yields
API: TypeAlias = EndpointAPI | AsyncEndpointAPI


@dataclass(frozen=True)
class Submit:
    """POST /run; answered with the job's first state (its `id` checked)."""

    endpoint_id: str
    job_input: Any
    ttl_ms: int | None = None

    def call(self, api: API) -> Any:
        return api.run(self.endpoint_id, self.job_input, ttl_ms=self.ttl_ms)


@dataclass(frozen=True)
class Status:
    endpoint_id: str
    job_id: str

    def call(self, api: API) -> Any:
        return api.status(self.endpoint_id, self.job_id)


@dataclass(frozen=True)
class Cancel:
    endpoint_id: str
    job_id: str

    def call(self, api: API) -> Any:
        return api.cancel(self.endpoint_id, self.job_id)


@dataclass(frozen=True)
class Health:
    endpoint_id: str

    def call(self, api: API) -> Any:
        return api.health(self.endpoint_id)


@dataclass(frozen=True)
class Sleep:
    """Wait this long (backoff or polling); answered with None."""

    seconds: float


@dataclass(frozen=True)
class Config:
    """Read the endpoint's configuration through the management API (REST v2 body); only
    yielded when the driver has a reader (`FallbackRun(read_config=True)`)."""

    endpoint_id: str


def config_unread(endpoint_id: str, exc: Exception) -> AttemptFailed:
    """A failed configuration read, as the policy takes failures (it then decides nothing on it)."""
    return AttemptFailed(endpoint_id, FailureReason.HTTP_ERROR, f"reading the endpoint's configuration failed: {exc}")


# what a driver calls to answer `Config`: an endpoint id in, its REST v2 body out
# (core.endpoints.get_endpoint with the caller's key and base URL)
ConfigReader: TypeAlias = Callable[[str], dict[str, Any]]

Call: TypeAlias = Submit | Status | Cancel | Health
Request: TypeAlias = Call | Config | Sleep
# a policy's steps: yields requests, is sent their answers (Any), returns T
Steps: TypeAlias = Generator[Request, Any, T]


class Exchange(Generic[T]):
    """Carries a policy's steps through a driver: iterate for each request, then `answer` or `fail` it.

        run = Exchange(steps)
        for request in run:
            try:
                run.answer(perform(request))
            except AttemptFailed as exc:
                run.fail(exc)
        return run.result

    Only `AttemptFailed` goes back into the policy; anything else is not the policy's to decide and
    leaves the driver as it is. The policy's own typed errors leave the loop as they are raised.
    """

    def __init__(self, steps: Steps[T]) -> None:
        self._steps = steps
        self._answer: Any = None
        self._error: AttemptFailed | None = None
        self._result: list[T] = []

    def __iter__(self) -> Iterator[Request]:
        while True:
            answer, error = self._answer, self._error
            self._answer, self._error = None, None
            try:
                request = self._steps.send(answer) if error is None else self._steps.throw(error)
            except StopIteration as stop:
                self._result.append(stop.value)
                return
            yield request

    def answer(self, value: Any) -> None:
        self._answer = value

    def fail(self, exc: AttemptFailed) -> None:
        self._error = exc

    @property
    def result(self) -> T:
        if not self._result:
            raise RuntimeError("the policy's steps have not finished")
        return self._result[0]


def health_check(breaker: CircuitBreaker, endpoint_id: str, *, read_config: bool = False) -> Steps[bool]:
    """Ask `/health`; an endpoint that cannot serve (or whose check fails) is taken out of rotation.
    With `read_config`, an endpoint scaled to zero (workers max 0) is taken out too; a failed
    configuration read decides nothing (the health check stands)."""
    try:
        health = yield Health(endpoint_id)
    except AttemptFailed as exc:
        return breaker.record_health(endpoint_id, None, f"{exc.reason.value}: {exc.message}")
    serves = breaker.record_health(endpoint_id, health)
    if not (serves and read_config):
        return serves
    try:
        config = yield Config(endpoint_id)
    except AttemptFailed:
        return serves
    if workers_max(config) == 0:
        breaker.trip(endpoint_id, "scaled to zero: the endpoint's workers max is 0", FailureReason.SCALED_TO_ZERO.value)
        return False
    return serves


# ------------------------------------------------------------ one call, every tier
class FallbackRun:
    """The decisions of one `run_sync` call. `in_flight` is the (endpoint, job id) of the job that was
    submitted and is not settled yet, so that a driver whose caller goes away can `abandon` it."""

    def __init__(
        self,
        pair: TierPair,
        policy: Policy,
        breaker: CircuitBreaker,
        clock: Callable[[], float],
        *,
        uniform: Callable[[float, float], float] = random.uniform,
        read_config: bool = False,
    ) -> None:
        self.pair = pair
        self.read_config = read_config  # the driver can answer `Config` (a management API reader)
        self.policy = policy
        self.breaker = breaker
        self.clock = clock
        self.uniform = uniform  # the backoff's jitter
        self.in_flight: tuple[str, str] | None = None

    def steps(self, job_input: Any, timeout: float | None = None) -> Steps[FallbackResult]:
        """Each tier in order, within the caller's `timeout` (overall, split across tiers)."""
        start, attempts = self.clock(), []
        failures: dict[str, AttemptFailed] = {}
        legs = self.pair.legs()
        for index, (tier, spec) in enumerate(legs):
            self.in_flight = None
            t0 = self.clock()
            budget = tier_budget(spec, timeout, t0 - start)
            last = index == len(legs) - 1
            if not last and not self.breaker.is_open(spec.endpoint_id) and self.breaker.health_due(spec.endpoint_id):
                yield from health_check(self.breaker, spec.endpoint_id, read_config=self.read_config)
            try:
                check_gate(spec, budget, last, self.breaker)
                ttl_ms = spot_ttl_ms(tier, budget, self.policy)
                submit = Submit(spec.endpoint_id, job_input, ttl_ms)
                output, job_id = yield from self._attempt(spec, submit, t0 + budget, budget)
            except JobRejected as exc:
                attempts.append(failed_attempt(tier, exc, self.clock() - t0))
                raise
            except AttemptFailed as exc:
                attempts.append(failed_attempt(tier, exc, self.clock() - t0))
                note_failure(self.breaker, spec, exc)
                if not last and not may_fall_back(exc, self.policy):
                    raise
                failures[tier] = exc
                continue
            self.in_flight = None
            self.breaker.record_success(spec.endpoint_id)
            attempts.append(Attempt(tier, spec.endpoint_id, "served", job_id, seconds=round(self.clock() - t0, 3)))
            return FallbackResult(output, tier, spec.endpoint_id, job_id, tuple(attempts))
        raise AllTiersFailed(failures.get("spot"), failures["on_demand"])

    def abandon(self) -> Steps[None]:
        """Cancel the job in flight, best effort: its caller is gone, so a failure has no one to go to."""
        if self.in_flight is None:
            return
        endpoint_id, job_id = self.in_flight
        try:
            yield from self._call(Cancel(endpoint_id, job_id), self.policy.cancel_attempts, None)
        except AttemptFailed:
            return

    # ------------------------------------------------------------ one tier
    def _call(self, request: Call, attempts: int, deadline: float | None, *, submit: bool = False) -> Steps[Any]:
        """One API call, tried again after a backoff while `should_retry`, up to `attempts` tries and `deadline`."""
        tries = 1
        while True:
            try:
                return (yield request)
            except AttemptFailed as exc:
                out_of_time = deadline is not None and self.clock() >= deadline
                if not should_retry(exc, submit=submit) or tries >= attempts or out_of_time:
                    raise
            yield Sleep(self.policy.backoff_s(tries, self.uniform))
            tries += 1

    def _attempt(
        self, spec: EndpointSpec, submit: Submit, deadline: float, budget: float
    ) -> Steps[tuple[Any, str | None]]:
        ep = spec.endpoint_id
        state: dict[str, Any] = yield from self._call(submit, spec.max_attempts, deadline, submit=True)
        job_id: str = state["id"]  # `submitted` checked it
        self.in_flight = (ep, job_id)
        start_by = deadline if spec.start_timeout_s is None else min(deadline, self.clock() + spec.start_timeout_s)
        delay = self.policy.poll_initial_s
        while state.get("status") not in FINAL_STATES:
            if self.clock() >= deadline:
                return (yield from self._cancel_or_take(spec, still_running(ep, state, budget)))
            if not started(state) and self.clock() >= start_by:
                return (yield from self._cancel_or_take(spec, (yield from self._not_started(spec, job_id))))
            if int(state.get("retries") or 0) > self.policy.max_worker_losses:
                lost = AttemptFailed(ep, FailureReason.WORKER_LOST, f"the job's worker died {state['retries']} times "
                                     f"(RunPod re-queued it each time)", job_id=job_id)  # fmt: skip
                return (yield from self._cancel_or_take(spec, lost))
            wake = deadline if started(state) else start_by
            yield Sleep(max(0.0, min(delay, wake - self.clock())))
            delay = min(delay * 2, self.policy.poll_max_s)
            try:
                state = yield from self._call(Status(ep, job_id), spec.max_attempts, deadline)
            except AttemptFailed as exc:
                exc.job_id = job_id
                return (yield from self._cancel_or_take(spec, exc))
        return outcome(ep, state, self.policy.no_fallback_types), job_id

    def _not_started(self, spec: EndpointSpec, job_id: str) -> Steps[AttemptFailed]:
        """The failure of a job still queued at the tier's time-to-start, with /health's account of why."""
        try:
            health = yield from self._call(Health(spec.endpoint_id), 1, None)
        except AttemptFailed:
            health = None
        return AttemptFailed(
            spec.endpoint_id,
            FailureReason.START_TIMEOUT,
            f"job not started after {spec.start_timeout_s:g}s: {queue_summary(health)}",
            job_id=job_id,
        )

    def _cancel_or_take(self, spec: EndpointSpec, failure: AttemptFailed) -> Steps[tuple[Any, str | None]]:
        """Cancel the failed attempt's job; if it finished meanwhile, its own outcome stands instead."""
        if failure.job_id is None:
            raise failure
        ep, job_id = spec.endpoint_id, failure.job_id
        try:
            answer = yield from self._call(Cancel(ep, job_id), self.policy.cancel_attempts, None)
        except AttemptFailed as exc:
            failure.message += f"; cancelling job {job_id} failed: {exc.reason.value}"
            raise failure from exc
        status = answer.get("status")
        if status not in FINISHED_BEFORE_CANCEL:
            failure.cancelled = status == "CANCELLED"
            raise failure
        # finished first: its output, or its worker error (a validation_error is JobRejected, no fallback)
        try:
            state = yield from self._call(Status(ep, job_id), self.policy.cancel_attempts, None)
        except AttemptFailed as exc:
            raise result_unread(failure, exc, job_id, str(status)) from exc
        return outcome(ep, state, self.policy.no_fallback_types), job_id
