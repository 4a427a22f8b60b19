"""The platform's pure parts: scaler decisions, ledger arithmetic, job policy, queue order, REST body checks."""

from __future__ import annotations

import pytest

from devtools.platform.config import ConfigError, EndpointConfig, Limits
from devtools.platform.jobs import Job, JobQueue, Policy, parse_policy
from devtools.platform.ledger import Ledger, WorkerTimeline
from devtools.platform.management import check_body, merged_gpu, rest_changes
from devtools.platform.process import worker_env
from devtools.platform.routes_client import Window
from devtools.platform.scaler import ScaleState, idle_to_stop, to_start

POLICY = Policy(execution_timeout=600, ttl=86_400)


def state(**kw: int | float | str) -> ScaleState:
    base: dict[str, int | float | str] = {
        "scaler_type": "QUEUE_DELAY", "scaler_value": 4, "workers_min": 0, "workers_max": 3,
        "queued": 0, "overdue": 0, "in_progress": 0, "alive": 0, "initializing": 0,
    }  # fmt: skip
    base.update(kw)
    return ScaleState(**base)  # type: ignore[arg-type]


def test_queue_delay_starts_from_zero_at_once_then_per_overdue_job() -> None:
    assert to_start(state()) == 0
    assert to_start(state(queued=1)) == 1  # scale from zero: no waiting scalerValue seconds
    assert to_start(state(queued=5, alive=1)) == 0  # nobody waited past 4 s yet
    assert to_start(state(queued=5, overdue=2, alive=1)) == 2
    assert to_start(state(queued=5, overdue=2, alive=2, initializing=1)) == 1  # one is already starting
    assert to_start(state(queued=50, overdue=50, alive=1)) == 2  # workersMax 3
    assert to_start(state(workers_min=2)) == 2


def test_request_count_keeps_one_worker_per_scaler_value_jobs() -> None:
    rc = {"scaler_type": "REQUEST_COUNT", "scaler_value": 2}
    assert to_start(state(**rc, queued=3, in_progress=2)) == 3  # ceil(5 / 2)
    assert to_start(state(**rc, queued=1, alive=1, in_progress=1)) == 0
    assert to_start(state(**rc, queued=100, workers_max=5)) == 5


def test_idle_timeout_stops_the_longest_idle_first_and_keeps_workers_min() -> None:
    idle = {"a": 10.0, "b": 12.0, "c": 14.5}
    assert idle_to_stop(idle, now=15.0, idle_timeout=2.0, alive=3, workers_min=0) == ["a", "b"]
    assert idle_to_stop(idle, now=15.0, idle_timeout=2.0, alive=3, workers_min=2) == ["a"]
    assert idle_to_stop(idle, now=15.0, idle_timeout=2.0, alive=4, workers_min=0) == ["a", "b"]


def test_ledger_states_add_up_to_the_lifetime_under_both_readings() -> None:
    ledger = Ledger(hourly_rate=3.6, bill_initializing=False)
    t = ledger.open("w1", now=100.0, wall=0.0)
    t.enter("idle", 102.0)  # ready after 2 s
    t.enter("running", 103.0)
    t.enter("running", 103.5)  # no change
    t.enter("idle", 106.0)
    t.close(108.25, 0)
    t.enter("running", 109.0)  # after exit: ignored
    assert t.seconds(now=500.0) == {"initializing": 2.0, "idle": 3.25, "running": 3.0}
    assert ledger.billed_seconds(500.0) == 6.25  # the endpoint's reading: initializing free
    assert ledger.billed_seconds(500.0, include_initializing=True) == 8.25
    assert ledger.billed_seconds(500.0, include_initializing=True, rounded=True) == 9.0
    assert ledger.bill_usd(500.0, include_initializing=True) == pytest.approx(8.25 * 0.001)
    live = ledger.open("w2", now=200.0, wall=0.0)
    assert live.seconds(now=201.5) == {"initializing": 1.5, "idle": 0.0, "running": 0.0}  # counted up to now
    samples = ledger.timeline(now=110.0, step=2.0)
    assert samples[0] == {"t": 0.0, "initializing": 1, "idle": 0, "running": 0}
    assert samples[2] == {"t": 4.0, "initializing": 0, "idle": 0, "running": 1}
    assert samples[5] == {"t": 10.0, "initializing": 0, "idle": 0, "running": 0}  # exited at 108.25


def test_state_at_and_summary() -> None:
    t = WorkerTimeline("w", spawned_at=0.0, spawned_wall=0.0)
    t.enter("idle", 1.0)
    assert [t.state_at(x) for x in (-1.0, 0.5, 1.0, 5.0)] == [None, "initializing", "idle", "idle"]
    ledger = Ledger(hourly_rate=0.0, bill_initializing=True)
    ledger.timelines["w"] = t
    summary = ledger.summary(now=3.0)
    assert summary["readings"]["without_initializing"]["billed_seconds"] == 2.0 and summary["billed_seconds"] == 3.0


def test_policy_bounds_and_queue_order() -> None:
    limits = Limits()
    assert parse_policy(None, 600, limits) == Policy(execution_timeout=600, ttl=86_400)
    assert parse_policy({"executionTimeout": 5000, "lowPriority": True}, 600, limits).execution_timeout == 5
    for bad in ({"executionTimeout": 4999}, {"ttl": 9_999}, {"ttl": 8 * 86_400_000}, {"when": 1}, []):
        with pytest.raises(ConfigError):
            parse_policy(bad, 600, limits)
    queue = JobQueue()
    low = Job("low", "ep", {}, Policy(600, 86_400, low_priority=True))
    first, second, again = (Job(n, "ep", {}, POLICY) for n in ("first", "second", "again"))
    for job in (low, first, second):
        queue.push(job)
    queue.push(again, front=True)
    assert (len(queue), queue.normal) == (4, 3)
    assert [queue.pop() for _ in range(4)] == [again, first, second, low]


def test_job_state_carries_delay_execution_time_and_worker() -> None:
    job = Job("j", "ep", {"x": 1}, POLICY, created=10.0)
    assert job.state() == {"id": "j", "status": "IN_QUEUE"}
    job.status, job.taken_at, job.worker_id = "IN_PROGRESS", 10.25, "w1"
    job.output, job.has_output = {"ok": True}, True
    job.finish("COMPLETED", 11.0, retention=60)
    assert job.state() == {
        "id": "j", "status": "COMPLETED", "delayTime": 250, "workerId": "w1", "executionTime": 750,
        "output": {"ok": True},
    }  # fmt: skip
    assert job.retain_until == 71.0


def test_rate_window() -> None:
    window = Window(2, period=10.0)
    assert [window.allow(t) for t in (0.0, 1.0, 2.0)] == [0.0, 0.0, 8.0]
    assert window.allow(10.5) == 0.0  # the first one left the window


def test_endpoint_config_and_rest_body_checks() -> None:
    with pytest.raises(ConfigError):
        EndpointConfig(worker_command=[]).validate()
    with pytest.raises(ConfigError):
        EndpointConfig(worker_command=["w"], workers_min=2, workers_max=1).validate()
    with pytest.raises(ConfigError):
        EndpointConfig(worker_command=["w"], execution_timeout=1).validate()  # RunPod's minimum is 5 s
    body = check_body({"workers": {"min": 1}, "scaling": {"type": "REQUEST_COUNT", "requestCount": 2}}, create=False)
    config = EndpointConfig(worker_command=["w"], env={"A": "1"})
    changes = rest_changes({**body, "env": {"B": "2"}, "timeout": 9000}, config, image_env={"IMG": "1"})
    # a PATCH's env replaces the env the API set (A); the image's own env (IMG) stays under it
    assert changes == {
        "workers_min": 1, "scaler_type": "REQUEST_COUNT", "scaler_value": 2, "env": {"IMG": "1", "B": "2"},
        "execution_timeout": 9.0,
    }  # fmt: skip
    assert rest_changes({"scaling": {"type": "QUEUE_DELAY", "queueDelay": 0.5}}, config, {})["scaler_value"] == 0.5
    with pytest.raises(ConfigError, match="idleTimeout"):  # RunPod: not beside REQUEST_COUNT on a queue endpoint
        rest_changes({"workers": {"idleTimeout": 5}}, config.replace(scaler_type="REQUEST_COUNT"), {})
    refused: tuple[object, ...] = (
        {"name": ""}, {"disk": True}, {"env": {"A": 1}}, {"cpu": {}}, [], {"type": "QUEUE"},
        {"scaling": {"type": "QUEUE_DELAY"}}, {"scaling": {"type": "QUEUE_DELAY", "queueDelay": 0.1}},
        {"gpu": {"excludedTypes": ["NVIDIA L4"]}}, {"gpu": {"pools": []}}, {"workers": {"idleTimeout": 0}},
    )  # fmt: skip
    for bad in refused:
        with pytest.raises(ConfigError):
            check_body(bad, create=False)
    # new pools replace the selection, exclusions included
    assert merged_gpu({"pools": ["A"], "excludedTypes": ["x"], "count": 1}, {"pools": ["B"]}) == {
        "pools": ["B"],
        "count": 1,
    }


def test_worker_environment_is_what_runpod_gives_a_deployed_worker() -> None:
    env = worker_env(
        base_url="http://127.0.0.1:9",
        endpoint_id="ep",
        worker_id="ep-w001",
        api_key="key",
        gpu="LOCAL",
        endpoint_env={"RUNPOD_POD_ID": "nope", "RUNPOD_SKIP_GPU_CHECK": "false", "MODEL": "tiny"},
        inherited={"PATH": "/bin", "RUNPOD_WEBHOOK_PING": "http://elsewhere"},
    )
    assert env["RUNPOD_WEBHOOK_GET_JOB"] == "http://127.0.0.1:9/v2/ep/job-take/$ID?gpu=LOCAL"
    assert env["RUNPOD_WEBHOOK_POST_OUTPUT"] == "http://127.0.0.1:9/v2/ep/job-done/$RUNPOD_POD_ID/$ID?gpu=LOCAL"
    assert env["RUNPOD_WEBHOOK_PING"] == "http://127.0.0.1:9/v2/ep/ping/$RUNPOD_POD_ID?gpu=LOCAL"
    assert (env["RUNPOD_POD_ID"], env["RUNPOD_AI_API_KEY"], env["RUNPOD_ENDPOINT_ID"]) == ("ep-w001", "key", "ep")
    assert (env["PATH"], env["MODEL"], env["RUNPOD_SKIP_GPU_CHECK"]) == ("/bin", "tiny", "false")
    assert env["RUNPOD_SKIP_AUTO_SYSTEM_CHECKS"] == "true"
