"""deploy and scale-to-zero over RunPod's REST API v2, against the local platform's management routes.

The platform (`devtools.platform`) serves `/v2/serverless` and `/v2/templates` in
RunPod's shapes and runs what they set: a created endpoint is live (its workers
are the echo worker), a PATCH changes the running endpoint. Every HTTP call the
client makes is recorded, so a test can say what was sent as well as what the
endpoint became.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import runpod

from client.__main__ import main
from client.deploy import EndpointConfig, load_endpoint_config, worker_timeout_defaults
from client.errors import ConfigFileError
from core.endpoints import (
    create_endpoint,
    endpoint_diff,
    get_endpoint,
    list_endpoints,
    scale_endpoint,
    scale_to_zero,
)
from core.errors import EndpointApiError
from devtools.platform import Platform
from handler.settings import Settings
from tests.platform_support import echo_config

ROOT = Path(__file__).resolve().parent.parent
KEY = "deploy-key"
Call = tuple[str, str, Any]  # method, path, JSON body


@pytest.fixture
async def platform(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Platform]:
    # created endpoints run the echo worker; none starts before a job is queued
    async with Platform(api_key=KEY, default_config=echo_config(workers_max=0)) as server:
        monkeypatch.setenv("RUNPOD_API_BASE_URL", server.url)
        monkeypatch.setattr(runpod, "endpoint_url_base", f"{server.url}/v2")
        monkeypatch.setattr(runpod, "api_key", KEY)
        yield server


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Call]]:
    """Every call core.endpoints makes: (method, path, body)."""
    made: list[Call] = []
    real = httpx.request

    def recording(method: str, url: str, **kwargs: Any) -> httpx.Response:
        made.append((method, httpx.URL(url).path, kwargs.get("json")))
        return real(method, url, **kwargs)

    monkeypatch.setattr(httpx, "request", recording)
    yield made


def toml_with(tmp_path: Path, **changes: str) -> Path:
    text = (ROOT / "runpod.toml").read_text()
    for old, new in changes.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "runpod.toml"
    path.write_text(text)
    return path


async def deploy(config: Path, *extra: str) -> int:
    return await asyncio.to_thread(main, ["deploy", "--config", str(config), "--api-key", KEY, *extra])


def writes(calls: list[Call]) -> list[Call]:
    return [c for c in calls if c[0] != "GET"]


async def test_deploy_creates_then_updates_only_what_changed(
    platform: Platform, calls: list[Call], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await deploy(ROOT / "runpod.toml") == 0
    ((method, path, body),) = writes(calls)
    assert (method, path) == ("POST", "/v2/serverless")
    (ep,) = platform.endpoints.values()
    made = await asyncio.to_thread(get_endpoint, ep.id, api_key=KEY)
    assert made["workers"] == {"min": 0, "max": 3, "idleTimeout": 5}
    assert made["scaling"] == {"type": "QUEUE_DELAY", "queueDelay": 3}
    assert made["gpu"]["pools"] == ["ADA_24", "AMPERE_24"]  # priority order kept
    assert made["gpu"]["allowedCudaVersions"] == ["13.0", "13.1", "13.2"]
    assert (made["flashboot"], made["image"], made["type"]) == ("FLASHBOOT", "frugal-worker:latest", "QUEUE")
    # the engine starts inside the first job: start timeout + request timeout, not RunPod's 600 s
    assert made["timeout"] == body["timeout"] == 1_200_000
    assert ep.config.execution_timeout == 1200.0 and ep.config.env["MAX_CONCURRENCY"] == "64"

    changed = toml_with(
        tmp_path,
        **{
            "workers_max = 3": "workers_max = 5",
            'MAX_CONCURRENCY = "64"': 'MAX_CONCURRENCY = "32"',
            'image_name = "frugal-worker:latest"': 'image_name = "frugal-worker:v2"',
        },
    )
    calls.clear()
    capsys.readouterr()
    assert await deploy(changed, "--dry-run") == 0
    out = capsys.readouterr().out
    assert "update endpoint 'frugal-worker'" in out and "4 change(s)" in out
    lines = [line.split() for line in out.splitlines()]
    assert ["workers.max", "3", "5"] in lines and ["env.MAX_CONCURRENCY", "64", "32"] in lines
    assert ["env.ENDPOINT_WORKERS_MAX", "3", "5"] in lines  # the worker's budget follows the endpoint
    assert ["image", "frugal-worker:latest", "frugal-worker:v2"] in lines
    assert writes(calls) == [] and ep.config.workers_max == 3  # a dry run changes nothing

    assert await deploy(changed) == 0
    wanted_env = {
        "HF_HUB_OFFLINE": "1",
        "MAX_CONCURRENCY": "32",
        "DAILY_BUDGET_USD": "0",
        "BUDGET_SCALE_TO_ZERO": "auto",
        # what the worker's budget must know of the endpoint: its workers max and idle timeout
        "ENDPOINT_WORKERS_MAX": "5",
        "ENDPOINT_IDLE_TIMEOUT": "5",
    }
    # one PATCH, of the changed fields alone (a PATCH's env replaces the endpoint's, so it goes whole)
    assert writes(calls) == [
        ("PATCH", f"/v2/serverless/{ep.id}", {"image": "frugal-worker:v2", "env": wanted_env, "workers": {"max": 5}})
    ]
    assert list(platform.endpoints) == [ep.id]  # updated in place
    assert (ep.config.workers_max, ep.config.env["MAX_CONCURRENCY"], ep.config.flashboot) == (5, "32", "FLASHBOOT")
    after = await asyncio.to_thread(get_endpoint, ep.id, api_key=KEY)
    assert after["image"] == "frugal-worker:v2" and after["timeout"] == 1_200_000

    calls.clear()
    capsys.readouterr()
    assert await deploy(changed) == 0
    assert writes(calls) == [] and "is up to date" in capsys.readouterr().out


async def test_deploy_applies_a_template_and_a_change_of_template(
    platform: Platform, calls: list[Call], tmp_path: Path
) -> None:
    def template(image: str) -> str:
        env = {"FROM_TEMPLATE": "1", "MAX_CONCURRENCY": "8"}
        body = {"name": image, "image": image, "serverless": True, "env": env, "allowedCudaVersions": ["12.8"]}
        answer = httpx.post(f"{platform.url}/v2/templates", json=body, headers={"Authorization": f"Bearer {KEY}"})
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])

    first, second = await asyncio.to_thread(template, "tpl/worker:1"), await asyncio.to_thread(template, "tpl/worker:2")
    from_template = {
        'image_name = "frugal-worker:latest"': 'image_name = ""',
        'template_id = ""': f'template_id = "{first}"',
        'allowed_cuda_versions = ["13.0", "13.1", "13.2"]': "allowed_cuda_versions = []",
    }
    assert await deploy(toml_with(tmp_path, **from_template)) == 0
    (ep,) = platform.endpoints.values()
    made = await asyncio.to_thread(get_endpoint, ep.id, api_key=KEY)
    assert made["image"] == "tpl/worker:1" and made["gpu"]["allowedCudaVersions"] == ["12.8"]
    assert made["env"]["FROM_TEMPLATE"] == "1" and made["env"]["MAX_CONCURRENCY"] == "64"  # runpod.toml wins

    calls.clear()
    assert (
        await deploy(toml_with(tmp_path, **{**from_template, f'template_id = "{first}"': f'template_id = "{second}"'}))
        == 0
    )
    assert writes(calls) == [("PATCH", f"/v2/serverless/{ep.id}", {"image": "tpl/worker:2"})]
    assert (await asyncio.to_thread(get_endpoint, ep.id, api_key=KEY))["image"] == "tpl/worker:2"


async def test_scale_to_zero_keeps_flashboot_and_scales_back(platform: Platform, calls: list[Call]) -> None:
    body = {
        "name": "budgeted", "type": "QUEUE", "image": "frugal-worker:latest", "gpu": {"pools": ["ADA_24"]},
        "workers": {"min": 0, "max": 0, "idleTimeout": 9}, "scaling": {"type": "QUEUE_DELAY", "queueDelay": 4},
        "flashboot": "FLASHBOOT", "env": {"A": "1"},
    }  # fmt: skip
    created = await asyncio.to_thread(lambda: create_endpoint(body, api_key=KEY))
    job = await asyncio.to_thread(lambda: runpod.Endpoint(created["id"]).run({"prompt": "x"}))
    await asyncio.to_thread(scale_to_zero, created["id"], KEY)
    assert writes(calls)[-1] == ("PATCH", f"/v2/serverless/{created['id']}", {"workers": {"min": 0, "max": 0}})
    saved = await asyncio.to_thread(get_endpoint, created["id"], api_key=KEY)
    assert saved["workers"] == {"min": 0, "max": 0, "idleTimeout": 9} and saved["flashboot"] == "FLASHBOOT"
    assert (saved["name"], saved["scaling"], saved["env"]) == ("budgeted", body["scaling"], {"A": "1"})  # the rest kept
    await asyncio.sleep(0.3)
    assert await asyncio.to_thread(job.status) == "IN_QUEUE"  # workers max 0: nobody takes it

    back = await asyncio.to_thread(lambda: scale_endpoint(created["id"], 0, 1, api_key=KEY))
    assert back["workers"]["max"] == 1 and back["flashboot"] == "FLASHBOOT"
    assert (await asyncio.to_thread(job.output, 60))["echo"] == {"prompt": "x"}  # the queued job runs once scaled back


async def test_unknown_endpoint_and_wrong_key_give_one_clear_line(
    platform: Platform, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(EndpointApiError, match=r"endpoint 'nope': not found for this API key"):
        await asyncio.to_thread(scale_to_zero, "nope", KEY)
    with pytest.raises(EndpointApiError, match=r"endpoint 'x': RunPod API refused the API key \(HTTP 401"):
        await asyncio.to_thread(lambda: get_endpoint("x", api_key="wrong"))
    with pytest.raises(EndpointApiError, match="no RunPod API key"):
        await asyncio.to_thread(lambda: list_endpoints(api_key=""))
    code = await asyncio.to_thread(main, ["deploy", "--config", str(ROOT / "runpod.toml"), "--api-key", "wrong"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "refused the API key" in err and "Traceback" not in err
    assert platform.endpoints == {}


async def test_refused_body_names_the_endpoint_and_runpods_reason(platform: Platform) -> None:
    body = {"name": "bad", "type": "QUEUE", "image": "i", "gpu": {"pools": ["ADA_24"]},
            "scaling": {"type": "QUEUE_DELAY", "queueDelay": 4}, "flashboot": "ON"}  # fmt: skip
    with pytest.raises(EndpointApiError, match=r"endpoint 'bad': RunPod API refused the call \(HTTP 400: flashboot"):
        await asyncio.to_thread(lambda: create_endpoint(body, api_key=KEY))


def test_unreachable_api_is_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNPOD_API_BASE_URL", "http://127.0.0.1:9")  # nothing listens
    with pytest.raises(EndpointApiError, match=r"endpoint 'e1': RunPod API at http://127.0.0.1:9 unreachable"):
        get_endpoint("e1", api_key=KEY)


def test_execution_timeout_is_the_workers_engine_start_plus_request_timeout(tmp_path: Path) -> None:
    fields = Settings.model_fields
    defaults = worker_timeout_defaults()
    assert defaults == {
        "ENGINE_START_TIMEOUT": fields["engine_start_timeout"].default,
        "ENGINE_REQUEST_TIMEOUT": fields["engine_request_timeout"].default,
    }
    config = load_endpoint_config(ROOT / "runpod.toml")
    assert config.body()["timeout"] == round(sum(defaults.values()) * 1000)
    slow = config.model_copy(update={"env": {**config.env, "ENGINE_START_TIMEOUT": "900"}})
    assert slow.body()["timeout"] == round((900 + defaults["ENGINE_REQUEST_TIMEOUT"]) * 1000)
    with pytest.raises(ConfigFileError, match="ENGINE_REQUEST_TIMEOUT"):
        load_endpoint_config(
            toml_with(tmp_path, **{'BUDGET_SCALE_TO_ZERO = "auto"': 'ENGINE_REQUEST_TIMEOUT = "soon"'})
        )


def test_body_carries_scaling_flashboot_and_the_request_count_rule() -> None:
    config = load_endpoint_config(ROOT / "runpod.toml")
    assert config.body()["flashboot"] == "FLASHBOOT"
    counted = EndpointConfig.model_validate(
        {**config.model_dump(), "scaler_type": "REQUEST_COUNT", "scaler_value": 2, "flashboot": False}
    ).body()
    assert counted["scaling"] == {"type": "REQUEST_COUNT", "requestCount": 2} and counted["flashboot"] == "OFF"
    assert "idleTimeout" not in counted["workers"]  # RunPod refuses it beside REQUEST_COUNT scaling


def test_endpoint_diff_sends_only_what_differs() -> None:
    current = {
        "id": "e", "name": "n", "type": "QUEUE", "image": "i:1", "env": {"A": "1", "B": "2"},
        "gpu": {"pools": ["ADA_24", "AMPERE_24"], "count": 1, "allowedCudaVersions": ["12.8", "12.9"],
                "minCudaVersion": None},
        "workers": {"min": 0, "max": 3, "idleTimeout": 5}, "scaling": {"type": "QUEUE_DELAY", "queueDelay": 4.0},
        "dataCenterIds": ["EU-RO-1", "US-TX-3"], "timeout": 600_000, "flashboot": "FLASHBOOT",
    }  # fmt: skip
    same = {k: v for k, v in current.items() if k != "id"}
    same.update(
        type="LOAD_BALANCER", dataCenterIds=["US-TX-3", "EU-RO-1"], scaling={"type": "QUEUE_DELAY", "queueDelay": 4}
    )
    same["gpu"] = {**current["gpu"], "allowedCudaVersions": ["12.9", "12.8"]}  # type: ignore[dict-item]
    assert endpoint_diff(current, same) == {}  # type is set at creation; order of sets does not matter
    assert endpoint_diff(current, {"workers": {"min": 0, "max": 5, "idleTimeout": 5}}) == {"workers": {"max": 5}}
    assert endpoint_diff(current, {"env": {"A": "1"}}) == {"env": {"A": "1"}}  # a removed key: the env goes whole
    assert endpoint_diff(current, {"gpu": {"pools": ["AMPERE_24", "ADA_24"]}}) == {
        "gpu": {"pools": ["AMPERE_24", "ADA_24"]}
    }  # priority order is a change
    floored = {**current, "gpu": {"pools": ["ADA_24"], "minCudaVersion": "12.0"}}
    assert endpoint_diff(floored, {"gpu": {"allowedCudaVersions": ["13.0"]}}) == {
        "gpu": {"allowedCudaVersions": ["13.0"], "minCudaVersion": ""}
    }  # RunPod refuses a set beside a floor
    assert endpoint_diff(current, {"scaling": {"type": "REQUEST_COUNT", "requestCount": 2}}) == {
        "scaling": {"type": "REQUEST_COUNT", "requestCount": 2}
    }


def test_bad_endpoint_section_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match=r"endpoint.scaler_type"):
        load_endpoint_config(toml_with(tmp_path, **{'scaler_type = "QUEUE_DELAY"': 'scaler_type = "FAST"'}))
    with pytest.raises(ConfigFileError, match="workers_max"):
        load_endpoint_config(toml_with(tmp_path, **{"workers_max = 3": "workers_max = -1"}))
    with pytest.raises(ConfigFileError, match=r"endpoint.flashboot"):
        load_endpoint_config(toml_with(tmp_path, **{'flashboot = "FLASHBOOT"': 'flashboot = "ON"'}))
    with pytest.raises(ConfigFileError, match=r"endpoint.allowed_cuda_versions"):
        load_endpoint_config(toml_with(tmp_path, **{'"13.0", "13.1"': '"13", "13.1"'}))
    with pytest.raises(ConfigFileError, match="cannot read"):
        load_endpoint_config(tmp_path / "absent.toml")


def test_dry_run_without_key_touches_no_api(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    monkeypatch.setenv("RUNPOD_API_BASE_URL", "http://127.0.0.1:9")  # nothing listens: any call would fail
    assert main(["deploy", "--config", str(ROOT / "runpod.toml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "workers.min" in out and "QUEUE_DELAY" in out and "1200000" in out and "nothing was changed" in out
