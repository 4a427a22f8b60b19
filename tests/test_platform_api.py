"""The platform's endpoint API and management API answer as RunPod documents them.

Most tests here need no worker at all (workersMax 0: jobs stay queued); the
last ones start one echo worker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import requests
import runpod

from devtools.platform import EndpointConfig, Limits, Platform
from tests.platform_support import API_KEY, Client, dump_logs, echo_config, wait_status

LIMITS = Limits(execution_timeout_min_ms=100, ttl_min_ms=100, runsync_wait_min_ms=300)


@pytest.fixture
async def platform(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Platform]:
    async with Platform(limits=LIMITS, default_config=echo_config(workers_max=0)) as server:
        monkeypatch.setattr(runpod, "endpoint_url_base", f"{server.url}/v2")
        monkeypatch.setattr(runpod, "api_key", API_KEY)
        monkeypatch.setenv("RUNPOD_API_BASE_URL", server.url)
        try:
            yield server
        finally:
            for ep in server.endpoints.values():
                dump_logs(ep)


@pytest.fixture
async def client(platform: Platform) -> AsyncIterator[Client]:
    platform.add_endpoint("q", echo_config(workers_max=0))  # nobody takes jobs
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        yield Client(http, platform.url, "q")


async def test_ttl_deletes_the_job_and_policy_bounds_are_checked(client: Client) -> None:
    started = time.monotonic()
    job = await client.run({"n": 1}, policy={"ttl": 300, "lowPriority": True})
    assert (await client.status(job["id"])) == (200, {"id": job["id"], "status": "IN_QUEUE"})
    while (await client.status(job["id"]))[0] != 404:  # deleted at its ttl, by the platform's next tick
        assert time.monotonic() - started < 10, "the job outlived its 300 ms ttl"
        await asyncio.sleep(0.02)
    assert time.monotonic() - started >= 0.3
    for policy in ({"ttl": 50}, {"executionTimeout": 10}, {"ttl": "soon"}, {"priority": 1}, {"lowPriority": "yes"}):
        code, body = await client.call("POST", "run", {"input": {}, "policy": policy})
        assert code == 400, (policy, body)
    assert (await client.call("POST", "run", {"prompt": "no input"}))[0] == 400


async def test_purge_cancel_retry_and_their_rate_limits(client: Client) -> None:
    ids = [(await client.run({"i": i}))["id"] for i in range(3)]
    assert await client.call("POST", "purge-queue") == (200, {"removed": 3, "status": "completed"})
    assert (await client.status(ids[0]))[1]["status"] == "CANCELLED"
    assert await client.call("POST", "purge-queue") == (200, {"removed": 0, "status": "completed"})
    assert (await client.call("POST", "purge-queue"))[0] == 429  # 2 per 10 s
    assert (await client.call("POST", f"retry/{ids[0]}"))[0] == 400  # only FAILED or TIMED_OUT
    assert (await client.call("POST", "cancel/nope"))[0] == 404


async def test_run_and_cancel_answer_429_past_their_rates() -> None:
    async with (
        Platform(limits=Limits(run_per_10s=5, cancel_per_10s=2)) as server,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_KEY}"}) as http,
    ):
        server.add_endpoint("q", echo_config(workers_max=0))
        client = Client(http, server.url, "q")
        ids = [(await client.run({"i": i}))["id"] for i in range(2)]
        codes = [(await client.call("POST", "run", {"input": {}}))[0] for _ in range(4)]
        assert codes == [200, 200, 200, 429]  # 5 per 10 s in these limits (RunPod: 1000)
        assert [(await client.call("POST", f"cancel/{i}"))[0] for i in (*ids, ids[0])] == [200, 200, 429]
        async with http.post(f"{client.base}/run", json={"input": {}}, headers={"Authorization": ""}) as response:
            assert response.status == 401


async def test_runsync_wait_is_clamped_and_answers_the_queued_state(client: Client) -> None:
    started = time.monotonic()
    code, state = await client.call("POST", "runsync?wait=1", {"input": {}})
    assert code == 200 and state["status"] == "IN_QUEUE"
    # clamped up to the minimum (300 ms in these limits), never the 90 s default
    assert 0.3 <= time.monotonic() - started < 30.0
    code, health = await client.call("GET", "health")
    assert health["jobs"]["inQueue"] == 1 and health["workers"]["idle"] == 0


async def test_rest_v2_management_validates_and_changes_the_live_endpoint(platform: Platform) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    base = f"{platform.url}/v2/serverless"
    good: dict[str, Any] = {
        "name": "frugal", "type": "QUEUE", "image": "frugal/worker:1", "gpu": {"pools": ["ADA_24"], "count": 1},
        "scaling": {"type": "QUEUE_DELAY", "queueDelay": 4},
    }  # fmt: skip
    async with aiohttp.ClientSession(headers=headers) as http:

        async def call(method: str, url: str, body: Any = None) -> tuple[int, Any]:
            async with http.request(method, url, json=body) as response:
                return response.status, await response.json(content_type=None)

        for bad in (
            {k: v for k, v in good.items() if k != "image"},  # required (without a templateId)
            {k: v for k, v in good.items() if k != "type"},  # required on create
            {**good, "workersMax": 2},  # GraphQL's name is not a REST field
            {**good, "workers": {"max": 2, "maximum": 3}},  # unknown nested field
            {**good, "workers": {"max": "2"}},  # wrong type
            {**good, "flashboot": "ON"},
            {**good, "workers": {"min": 3, "max": 1}},
            {**good, "scaling": {"type": "QUEUE_DELAY", "value": 4}},  # v2 names the value queueDelay
            {**good, "scaling": {"type": "REQUEST_COUNT", "requestCount": 2}, "workers": {"idleTimeout": 5}},
            {**good, "gpu": {"pools": ["ADA_24"], "allowedCudaVersions": ["12.8"], "minCudaVersion": "12.0"}},
            {**good, "gpu": {"pools": ["ADA_24"], "allowedCudaVersions": ["12"]}},
            {**good, "templateId": "nope"},  # 404
        ):
            code, body = await call("POST", base, bad)
            assert code in (400, 404) and body["status"] == code and body["detail"], (bad, body)
        cuda = {"pools": ["ADA_24", "AMPERE_24"], "allowedCudaVersions": ["12.8"]}
        code, created = await call(
            "POST", base, {**good, "gpu": cuda, "workers": {"max": 0, "idleTimeout": 2}, "env": {"A": "1", "B": "2"}}
        )
        assert code == 201 and created["workers"] == {"min": 0, "max": 0, "idleTimeout": 2}
        assert created["gpu"] == {**cuda, "count": 1, "minCudaVersion": None} and created["flashboot"] == "OFF"
        ep = platform.endpoint(created["id"])
        code, patched = await call("PATCH", f"{base}/{ep.id}", {"workers": {"max": 2}, "timeout": 30_000})
        assert (
            code == 200 and patched["workers"] == {"min": 0, "max": 2, "idleTimeout": 2} and patched["name"] == "frugal"
        )
        assert patched["env"] == {"A": "1", "B": "2"} and patched["gpu"] == created["gpu"]  # the rest untouched
        assert (ep.config.workers_max, ep.config.execution_timeout, ep.config.idle_timeout) == (2, 30.0, 2)
        code, patched = await call("PATCH", f"{base}/{ep.id}", {"env": {"B": "3"}, "gpu": {"pools": ["ADA_48_PRO"]}})
        assert code == 200 and patched["env"] == {"B": "3"} and ep.config.env == {"B": "3"}  # env is replaced
        assert patched["gpu"]["pools"] == ["ADA_48_PRO"] and patched["gpu"]["allowedCudaVersions"] == ["12.8"]
        for refused in ({"gpu": {"kind": "x"}}, {"type": "QUEUE"}, {"gpu": {"minCudaVersion": "12.0"}}):
            assert (await call("PATCH", f"{base}/{ep.id}", refused))[0] == 400, refused  # the last: beside a set
        assert (await call("PATCH", f"{base}/nope", {"workers": {"max": 1}}))[0] == 404
        assert (await call("GET", f"{base}/{ep.id}/workers"))[1]["summary"]["total"] == 0
        assert [e["id"] for e in (await call("GET", base))[1]["endpoints"]] == [ep.id]
        async with http.delete(f"{base}/{ep.id}") as response:
            assert response.status == 204 and ep.id not in platform.endpoints
        async with aiohttp.ClientSession() as anonymous, anonymous.get(base) as response:
            assert response.status == 401


async def test_rest_v2_templates_seed_what_an_endpoint_does_not_set(platform: Platform) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with aiohttp.ClientSession(headers=headers) as http:

        async def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
            async with http.request(method, f"{platform.url}{path}", json=body) as response:
                return response.status, await response.json(content_type=None)

        template = {"name": "t", "image": "tpl:1", "env": {"A": "1", "B": "1"}, "allowedCudaVersions": ["13.0"]}
        code, pod_template = await call("POST", "/v2/templates", template)
        assert code == 201 and pod_template["serverless"] is False
        code, made = await call("POST", "/v2/templates", {**template, "serverless": True, "ports": ["8000/http"]})
        assert code == 201 and (await call("GET", f"/v2/templates/{made['id']}"))[1] == made
        assert (await call("POST", "/v2/templates", {"name": "no image"}))[0] == 400
        endpoint = {"name": "e", "type": "QUEUE", "gpu": {"pools": ["ADA_24"]},
                    "scaling": {"type": "QUEUE_DELAY", "queueDelay": 4}, "env": {"B": "2"}}  # fmt: skip
        assert (await call("POST", "/v2/serverless", {**endpoint, "templateId": pod_template["id"]}))[0] == 422
        code, created = await call("POST", "/v2/serverless", {**endpoint, "templateId": made["id"]})
        assert code == 201 and created["image"] == "tpl:1" and created["ports"] == ["8000/http"]
        assert created["env"] == {"A": "1", "B": "2"} and created["gpu"]["allowedCudaVersions"] == ["13.0"]
        assert "templateId" not in created  # applied once, no link kept


async def test_graphql_save_endpoint_reaches_library_endpoints(platform: Platform) -> None:
    ep = platform.add_endpoint("lib", echo_config(workers_min=0, workers_max=2))

    def graphql(query: str) -> Any:
        answer = requests.post(
            f"{platform.url}/graphql", json={"query": query}, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10
        )
        return answer.json()

    listed = await asyncio.to_thread(graphql, "query { myself { endpoints { id workersMax } } }")
    assert {"id": "lib", "workersMax": 2} in [
        {k: e[k] for k in ("id", "workersMax")} for e in listed["data"]["myself"]["endpoints"]
    ]
    saved = await asyncio.to_thread(
        graphql, 'mutation { saveEndpoint(input: { id: "lib", workersMin: 0, workersMax: 0 }) { id workersMax } }'
    )
    assert saved["data"]["saveEndpoint"]["workersMax"] == 0 and ep.config.workers_max == 0
    refused = await asyncio.to_thread(
        graphql, 'mutation { saveEndpoint(input: { id: "lib", workersMax: 1, color: "red" }) { id } }'
    )
    assert "color" in refused["errors"][0]["message"] and ep.config.workers_max == 0


async def test_cancel_reaches_the_running_job_and_workers_max_changes_live(platform: Platform) -> None:
    config = echo_config(workers_max=0, idle_timeout=0.3, env={"RUNPOD_PING_INTERVAL": "1000"})
    ep = platform.add_endpoint("live", config)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        client = Client(http, platform.url, "live")
        job = await client.run({"sleep": 30})
        await asyncio.sleep(0.2)
        assert ep.ledger() == []  # workersMax 0: queued, nobody started
        ep.update(workers_max=1)
        state = await wait_status(client, job["id"], {"IN_PROGRESS"})
        assert (await client.call("POST", f"cancel/{job['id']}"))[1]["status"] == "CANCELLED"
        deadline = time.monotonic() + 30  # a loaded 2-core machine once took just over 10 s
        while "Stopping job." not in ep.worker_logs(state["workerId"]):  # on the stop channel (again after a ping)
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert (await client.status(job["id"]))[1]["status"] == "CANCELLED"
        await ep.wait_workers(0, timeout=10)  # idle after the cancel: scaled down
        (entry,) = ep.ledger()
        assert entry.stop_reason == "idle timeout"


async def test_a_broken_worker_command_backs_off_and_reports_unhealthy(platform: Platform) -> None:
    config = EndpointConfig(worker_command=["/nonexistent/worker"], workers_min=1, workers_max=1)
    ep = platform.add_endpoint("broken", config)
    await asyncio.sleep(1.2)
    assert 1 <= len(ep.ledger()) <= 2  # retried after 1 s, not in a tight loop
    assert ep.health()["workers"]["unhealthy"] == 1
    assert "cannot start" in ep.worker_logs(ep.ledger()[0].worker_id)
