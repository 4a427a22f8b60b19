"""The local RunPod API answers the runpod SDK's own calls the way RunPod does."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import requests
import runpod

from devtools.fake_jobs import Backend, Fault
from devtools.fake_runpod import FakeRunPod, echo_handler


async def counting_stream(job: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    for i in range(int(job["input"]["n"])):
        await asyncio.sleep(0.01)
        yield {"piece": i}


async def slow_handler(job: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(float(job["input"].get("sleep", 0)))
    return {"done": True}


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeRunPod]:
    server = FakeRunPod(Backend(echo_handler))
    server.add_endpoint("stream", Backend(counting_stream, return_aggregate_stream=True))
    server.add_endpoint("slow", Backend(slow_handler))
    url = await server.start()
    # runpod reads RUNPOD_ENDPOINT_BASE_URL once, at import, into this attribute (which its clients read);
    # the GraphQL base URL is read from the environment at each call.
    monkeypatch.setattr(runpod, "endpoint_url_base", f"{url}/v2")
    monkeypatch.setattr(runpod, "api_key", "sdk-key")
    monkeypatch.setenv("RUNPOD_API_BASE_URL", url)
    yield server
    await server.stop()


async def test_sdk_endpoint_run_sync_run_status_and_health(fake: FakeRunPod) -> None:
    def calls() -> tuple[Any, ...]:
        endpoint = runpod.Endpoint("ep1")
        answer = endpoint.run_sync({"prompt": "hi"}, timeout=10)
        job = endpoint.run({"prompt": "queued"})
        output = job.output(timeout=10)
        return answer, job.status(), output, endpoint.health()

    answer, status, output, health = await asyncio.to_thread(calls)
    assert answer == {"echo": {"prompt": "hi"}}
    assert (status, output) == ("COMPLETED", {"echo": {"prompt": "queued"}})
    assert health["jobs"]["completed"] == 2 and set(health["workers"]) >= {"idle", "running", "throttled"}


async def test_sdk_stream_and_aggregate(fake: FakeRunPod) -> None:
    def calls() -> tuple[list[Any], Any]:
        endpoint = runpod.Endpoint("stream")
        pieces = list(endpoint.run({"n": 3}).stream())
        return pieces, endpoint.run_sync({"n": 2}, timeout=10)

    pieces, aggregate = await asyncio.to_thread(calls)
    assert pieces == [{"piece": 0}, {"piece": 1}, {"piece": 2}]
    assert aggregate == [{"piece": 0}, {"piece": 1}]


async def test_sdk_cancel_stops_the_job_before_it_completes(fake: FakeRunPod) -> None:
    def calls() -> Any:
        job = runpod.Endpoint("slow").run({"sleep": 30})
        return job.cancel()

    answer = await asyncio.to_thread(calls)
    assert answer["status"] == "CANCELLED"
    (job,) = fake.jobs_of("slow")
    await fake.jobs.wait(job, 10.0)  # until its work ends: a job the cancel did not stop runs its 30 s
    assert job.task is not None and job.task.done(), f"{job.id} ({job.status}) still running after its cancel"
    assert job.cancelled and not job.completed and not job.handler_completed


async def test_asyncio_endpoint(fake: FakeRunPod) -> None:
    async with aiohttp.ClientSession() as session:
        endpoint = runpod.AsyncioEndpoint("ep2", session)
        job = await endpoint.run({"prompt": "async"})
        assert await job.output(timeout=10) == {"echo": {"prompt": "async"}}
        assert await job.status() == "COMPLETED"


async def test_handler_error_makes_the_job_failed_with_the_error(fake: FakeRunPod) -> None:
    error = json.dumps({"type": "validation_error", "message": "bad", "field": "prompt"})
    state = await asyncio.to_thread(
        lambda: requests.post(
            f"{fake.url}/v2/ep/runsync",
            json={"input": {"error": error}},
            headers={"Authorization": "Bearer k"},
            timeout=10,
        ).json()
    )
    assert state["status"] == "FAILED" and json.loads(state["error"])["type"] == "validation_error"


async def test_faults_and_auth(fake: FakeRunPod) -> None:
    headers = {"Authorization": "Bearer k"}

    def post(path: str, **kw: Any) -> requests.Response:
        return requests.post(f"{fake.url}{path}", json={"input": {}}, timeout=10, **kw)

    assert (await asyncio.to_thread(post, "/v2/ep/run")).status_code == 401
    fake.set_fault("ep", Fault("throttled", times=1))
    assert (await asyncio.to_thread(post, "/v2/ep/run", headers=headers)).status_code == 429
    assert (await asyncio.to_thread(post, "/v2/ep/run", headers=headers)).status_code == 200  # `times` ran out
    fake.set_fault("ep", Fault("server_error", status=502))
    assert (await asyncio.to_thread(post, "/v2/ep/run", headers=headers)).status_code == 502
    fake.set_fault("ep", Fault("drop"))
    with pytest.raises(requests.ConnectionError):
        await asyncio.to_thread(post, "/v2/ep/run", headers=headers)


async def test_admin_fault_route_for_other_processes(fake: FakeRunPod) -> None:
    def set_fault() -> requests.Response:
        return requests.post(f"{fake.url}/_admin/ep/fault", json={"mode": "no_capacity"}, timeout=10)

    assert (await asyncio.to_thread(set_fault)).status_code == 200
    assert fake.endpoint("ep").fault.mode == "no_capacity"
    bad = await asyncio.to_thread(lambda: requests.post(f"{fake.url}/_admin/ep/fault", json={"mood": "x"}, timeout=10))
    assert bad.status_code == 400 and "mood" in bad.text


async def test_env_variable_points_a_fresh_sdk_process_at_the_server(fake: FakeRunPod) -> None:
    code = "import runpod; runpod.api_key = 'k'; print(runpod.Endpoint('ep9').run_sync({'prompt': 'env'}, timeout=10))"
    env = {**os.environ, "RUNPOD_ENDPOINT_BASE_URL": f"{fake.url}/v2"}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, env=env, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    assert out.decode().strip().splitlines()[-1] == "{'echo': {'prompt': 'env'}}"


async def test_sdk_endpoint_management_calls(fake: FakeRunPod) -> None:
    def calls() -> tuple[Any, Any, Any]:
        template = runpod.create_template("tpl", "frugal/worker:1", is_serverless=True, env={"A": "b"})
        endpoint = runpod.create_endpoint(
            "frugal", template["id"], gpu_ids="ADA_24,AMPERE_24", workers_max=2, flashboot=True, idle_timeout=15
        )
        return template, endpoint, runpod.get_endpoints()

    template, endpoint, listed = await asyncio.to_thread(calls)
    assert template["env"] == [{"key": "A", "value": "b"}]
    assert endpoint["flashBootType"] == "FLASHBOOT" and endpoint["workersMax"] == 2 and endpoint["idleTimeout"] == 15
    assert [e["id"] for e in listed] == [endpoint["id"]]
