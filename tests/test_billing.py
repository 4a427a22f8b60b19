"""The meter: jobs plus overhead add up to the worker's running seconds."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from core.money import cost_usd
from handler.billing import ESTIMATE_WINDOW, PREFILL_WEIGHT, Meter, work_units


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_overlapping_jobs_share_seconds_by_tokens() -> None:
    clock = FakeClock()
    meter = Meter(0.05, clock=clock)
    clock.advance(10)  # boot: overhead
    meter.job_started("a")
    clock.advance(4)  # a alone
    meter.add_tokens("a", 10)
    meter.job_started("b")
    clock.advance(8)  # a and b: a 30 tokens, b 10 tokens
    meter.add_tokens("a", 30)
    meter.add_tokens("b", 10)
    a = meter.job_finished("a")
    clock.advance(2)  # b alone, no tokens reported: still b's
    b = meter.job_finished("b")
    clock.advance(5)  # idle
    assert a == pytest.approx(4 + 6)
    assert b == pytest.approx(2 + 2)
    assert meter.overhead_seconds() == pytest.approx(15)
    assert a + b + meter.overhead_seconds() == pytest.approx(meter.running_seconds())


def test_equal_split_without_tokens_and_engine_start_is_overhead() -> None:
    clock = FakeClock()
    meter = Meter(0.05, clock=clock)
    meter.job_started("a")
    meter.engine_starting()
    meter.job_started("b")
    clock.advance(60)  # engine start: overhead, though two jobs wait
    meter.engine_ready()
    clock.advance(10)  # both run, no tokens reported: 5 s each
    a = meter.job_finished("a")
    b = meter.job_finished("b")
    assert (a, b) == (pytest.approx(5), pytest.approx(5))
    assert meter.overhead_seconds() == pytest.approx(60)


def test_conservation_with_many_concurrent_jobs() -> None:
    rng = random.Random(7)
    clock = FakeClock()
    meter = Meter(0.05, clock=clock)
    running: list[str] = []
    billed = 0.0
    for step in range(5000):
        clock.advance(rng.random() * 0.2)
        roll = rng.random()
        if roll < 0.3 and len(running) < 64:
            job = f"j{step}"
            meter.job_started(job)
            running.append(job)
        elif roll < 0.55 and running:
            billed += meter.job_finished(running.pop(rng.randrange(len(running))))
        elif roll < 0.56:
            meter.engine_starting()
            clock.advance(rng.random() * 5)
            meter.engine_ready()
        elif running:
            meter.add_tokens(rng.choice(running), rng.randrange(0, 50))
    for job in running:
        billed += meter.job_finished(job)
    clock.advance(3)
    total = billed + meter.overhead_seconds()
    elapsed = clock.now - 1000.0  # the clock's own count, not the meter's
    # exact up to float rounding: about 5,000 segments summing to about 630 s (measured over 20 seeds:
    # at most 9e-13 s apart; a meter that lost a millionth of each job's share would be 3e-4 s apart)
    assert total == pytest.approx(elapsed, rel=1e-12, abs=1e-9)
    assert meter.running_seconds() == pytest.approx(elapsed, rel=1e-12, abs=1e-9)
    assert billed > 0 and meter.overhead_seconds() > 0


async def test_conservation_on_the_real_clock() -> None:
    meter = Meter(0.05)  # time.monotonic
    rng = random.Random(3)

    async def job(i: int) -> float:
        await asyncio.sleep(rng.random() * 0.05)
        meter.job_started(f"j{i}")
        for _ in range(rng.randrange(1, 5)):
            await asyncio.sleep(rng.random() * 0.02)
            meter.add_tokens(f"j{i}", rng.randrange(1, 20))
        return meter.job_finished(f"j{i}")

    billed = sum(await asyncio.gather(*(job(i) for i in range(40))))
    await asyncio.sleep(0.02)
    # read the overhead, then the running seconds: with no job in flight, they differ by the seconds that
    # passed between the two readings (the machine may pause this process there), and by nothing else
    before = time.monotonic()
    overhead = meter.overhead_seconds()
    running = meter.running_seconds()
    between = time.monotonic() - before
    assert -1e-9 <= running - (billed + overhead) <= between + 1e-9  # (1e-9: float rounding)
    assert billed < 40 * 0.15  # shared seconds are not summed wall times


def test_pace_is_the_slowest_busy_period_engine_start_excluded() -> None:
    clock = FakeClock()
    meter = Meter(0.05, clock=clock)
    assert meter.seconds_per_token() == 0.05  # default before any data
    for i, pace in enumerate([0.01, 0.2, 0.03]):
        meter.job_started(f"j{i}")
        meter.engine_starting()
        clock.advance(30)  # waiting for the engine does not count
        meter.engine_ready()
        clock.advance(pace * 100)
        meter.job_finished(f"j{i}", work=work_units(prompt_tokens=0, completion_tokens=100))
    assert meter.seconds_per_token() == pytest.approx(0.2)  # the slowest recent period
    # two jobs at once make one busy period: 10 s for 100 + 100 units of work
    meter.job_started("a")
    meter.job_started("b")
    clock.advance(10)
    meter.job_finished("a", work=100)
    assert meter.seconds_per_token() == pytest.approx(0.2)  # the period is still open
    meter.job_finished("b", work=100)
    fresh = Meter(0.05, clock=clock)
    fresh.job_started("a")
    fresh.job_started("b")
    clock.advance(10)
    fresh.job_finished("a", work=100)
    fresh.job_finished("b", work=100)
    assert fresh.seconds_per_token() == pytest.approx(0.05)
    # prompt tokens weigh PREFILL_WEIGHT: 800 prompt tokens are 100 units
    assert work_units(800, 0) == pytest.approx(100)


def test_overhead_is_split_into_boot_engine_start_and_idle() -> None:
    clock = FakeClock()
    meter = Meter(0.05, clock=clock, boot_seconds=2.0)  # the container start before Python ran
    clock.advance(1)  # the process starts up
    meter.worker_ready()
    clock.advance(5)  # idle, waiting for the first job
    meter.job_started("a")
    meter.engine_starting()
    clock.advance(40)
    meter.engine_ready()
    clock.advance(3)
    billed = meter.job_finished("a", work=10)
    clock.advance(7)  # the idle tail
    kinds = meter.overhead_by_kind()
    assert kinds == {"boot": pytest.approx(3), "engine_start": pytest.approx(40), "idle": pytest.approx(12)}
    assert billed == pytest.approx(3)
    assert meter.running_seconds() == pytest.approx(2 + 1 + 5 + 40 + 3 + 7)
    assert billed + sum(kinds.values()) == pytest.approx(meter.running_seconds())


def test_unknown_or_duplicate_jobs_are_refused() -> None:
    meter = Meter(0.05, clock=FakeClock())
    with pytest.raises(KeyError, match="not being metered"):
        meter.job_finished("nope")
    with pytest.raises(KeyError, match="not being metered"):
        meter.add_tokens("nope", 3)
    meter.job_started("a")
    with pytest.raises(ValueError, match="already"):
        meter.job_started("a")


def test_money() -> None:
    assert cost_usd(3600, 2.0) == pytest.approx(2.0)


def test_silent_jobs_share_equally_and_add_up() -> None:
    """Plain requests report their tokens only at the end; while they run they share the seconds equally."""
    clock = FakeClock()
    meter = Meter(0.05, clock=clock)
    meter.job_started("short", reports_tokens=False)
    meter.job_started("long", reports_tokens=False)
    clock.advance(6)  # both decoding: 3 s each
    meter.add_tokens("short", 20)  # the end-of-job report does not grab the segment
    short = meter.job_finished("short")
    clock.advance(4)  # long alone
    meter.add_tokens("long", 200)
    long = meter.job_finished("long")
    assert short == pytest.approx(3)
    assert long == pytest.approx(3 + 4)
    assert short + long + meter.overhead_seconds() == pytest.approx(meter.running_seconds())


def test_a_silent_job_weighs_like_the_average_reporting_job() -> None:
    clock = FakeClock()
    meter = Meter(0.05, clock=clock)
    meter.job_started("stream-a")
    meter.job_started("stream-b")
    meter.job_started("plain", reports_tokens=False)
    clock.advance(9)
    meter.add_tokens("stream-a", 10)
    meter.add_tokens("stream-b", 30)  # average 20: the silent job counts as 20 of 60 tokens
    plain = meter.job_finished("plain")
    a = meter.job_finished("stream-a")
    b = meter.job_finished("stream-b")
    assert (a, b, plain) == (pytest.approx(1.5), pytest.approx(4.5), pytest.approx(3.0))


# --- gaps `make mutate` found (issue 22): each test kills mutants that survived the fast tests ---------


def test_a_requests_pace_leaves_out_its_wait_for_an_engine_start_of_several_segments() -> None:
    clock = FakeClock()
    meter = Meter(0.05, clock=clock)
    meter.worker_ready()
    meter.job_started("a")
    meter.engine_starting()
    clock.advance(5)
    meter.job_started("b")  # a segment ends inside the start: a has waited 5 s, then 5 s more
    clock.advance(5)
    meter.engine_ready()
    meter.add_tokens("a", 20)
    clock.advance(2)  # a's 20 tokens in 2 s, b silent: a reported them all
    a = meter.job_finished("a", completion_tokens=20)
    assert a == pytest.approx(2.0)  # the start's 10 s are overhead
    assert meter.paces().completion == pytest.approx(2.0 / 20)  # 12 s of wall less the 10 s it waited


def test_a_job_reporting_after_an_engine_start_shares_by_the_tokens_of_that_segment_only() -> None:
    clock = FakeClock()
    meter = Meter(0.05, clock=clock)
    meter.worker_ready()
    meter.job_started("a")
    meter.job_started("b")
    meter.engine_starting()
    clock.advance(10)
    meter.engine_ready()
    meter.job_started("c")
    meter.add_tokens("a", 10)
    meter.add_tokens("a", 20)  # two reports in one segment add up: 30 against b's 10
    meter.add_tokens("b", 10)
    meter.add_tokens("c", 0)  # a report of nothing weighs nothing
    clock.advance(4)
    a, b, c = meter.job_finished("a"), meter.job_finished("b"), meter.job_finished("c")
    assert (a, b, c) == (pytest.approx(3.0), pytest.approx(1.0), 0.0)


def test_a_short_busy_period_is_a_pace_and_an_instant_one_is_not() -> None:
    clock = FakeClock()
    meter = Meter(0.05, clock=clock)
    meter.worker_ready()
    meter.job_started("instant")
    meter.job_finished("instant", work=40)  # no time passed: no pace to learn
    assert meter.seconds_per_token() == 0.05
    meter.job_started("short")
    clock.advance(0.5)
    meter.job_finished("short", work=20)  # half a second for 20 units
    assert meter.seconds_per_token() == pytest.approx(0.5 / 20)


def test_requests_that_say_nothing_of_one_sequences_pace_leave_the_paces_alone() -> None:
    clock = FakeClock()
    meter = Meter(0.05, clock=clock)
    meter.worker_ready()
    assert meter.paces().prompt == pytest.approx(0.05 * PREFILL_WEIGHT)  # before any measurement
    meter.job_started("two")
    clock.advance(4)
    meter.job_finished("two", completion_tokens=40, sequences=2)  # n=2: the busy pace bounds it
    meter.job_started("short-prompt")
    clock.advance(4)
    meter.job_finished("short-prompt", prompt_tokens=32)  # under 64 prompt tokens: its floor, not its pace
    assert meter.paces().completion == 0.05 and meter.paces().prompt == pytest.approx(0.05 * PREFILL_WEIGHT)


def test_paces_are_the_slowest_of_the_last_window_not_of_all_time() -> None:
    clock = FakeClock()
    meter = Meter(0.05, clock=clock)
    meter.worker_ready()

    def request(seconds: float, prompt: int, completion: int) -> None:
        meter.job_started("r")
        clock.advance(seconds)
        meter.job_finished("r", work=work_units(prompt, completion), prompt_tokens=prompt, completion_tokens=completion)

    request(10.0, 0, 20)  # slow: 0.5 s a token
    request(10.0, 2000, 0)  # slow prompt: 5 ms a token
    assert meter.paces().completion == pytest.approx(0.5) and meter.paces().prompt == pytest.approx(0.005)
    for _ in range(ESTIMATE_WINDOW):
        request(0.2, 0, 20)  # then 200 fast generations and 200 fast prompts
        request(0.2, 2000, 0)
    paces = meter.paces()
    assert paces.completion == pytest.approx(0.01) and paces.prompt == pytest.approx(0.0001)
    assert paces.busy == pytest.approx(0.2 / 20)  # the busy periods' window forgot the slow ones too (0.5)
