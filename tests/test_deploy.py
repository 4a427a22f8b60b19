"""deploy and scale_to_zero through the runpod SDK against the local RunPod API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import runpod

from client.__main__ import main
from client.deploy import load_endpoint_config
from client.errors import ConfigFileError
from core.endpoints import scale_to_zero
from core.errors import EndpointApiError
from devtools.fake_jobs import Backend
from devtools.fake_runpod import FakeRunPod, echo_handler

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeRunPod]:
    server = FakeRunPod(Backend(echo_handler), api_key="deploy-key")
    url = await server.start()
    monkeypatch.setenv("RUNPOD_API_BASE_URL", url)  # the SDK reads it at each GraphQL call
    monkeypatch.setattr(runpod, "api_key", None)  # deploy sets it; restored after the test
    monkeypatch.setattr(runpod, "endpoint_url_base", f"{url}/v2")
    yield server
    await server.stop()


def toml_with(tmp_path: Path, **changes: str) -> Path:
    text = (ROOT / "runpod.toml").read_text()
    for old, new in changes.items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "runpod.toml"
    path.write_text(text)
    return path


async def test_deploy_creates_then_updates_in_place(
    fake: FakeRunPod, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = ROOT / "runpod.toml"
    assert await asyncio.to_thread(main, ["deploy", "--config", str(config), "--api-key", "deploy-key"]) == 0
    (created,) = fake.registry.endpoints.values()
    assert (created["workersMin"], created["workersMax"], created["scalerType"], created["scalerValue"]) == (
        0,
        3,
        "QUEUE_DELAY",
        3,
    )
    assert created["flashBootType"] == "FLASHBOOT" and created["gpuIds"] == "ADA_24,AMPERE_24"
    (template,) = fake.registry.templates.values()
    assert template["imageName"] == "frugal-worker:latest" and created["templateId"] == template["id"]

    changed = toml_with(tmp_path, **{"workers_max = 3": "workers_max = 5"})
    capsys.readouterr()
    assert (
        await asyncio.to_thread(main, ["deploy", "--config", str(changed), "--api-key", "deploy-key", "--dry-run"]) == 0
    )
    assert "update" in capsys.readouterr().out and created["workersMax"] == 3  # a dry run changes nothing
    assert await asyncio.to_thread(main, ["deploy", "--config", str(changed), "--api-key", "deploy-key"]) == 0
    assert list(fake.registry.endpoints) == [created["id"]]  # updated, not a second endpoint
    assert fake.registry.endpoints[created["id"]]["workersMax"] == 5
    assert len(fake.registry.templates) == 1


async def test_deploy_with_wrong_key_fails_clearly(fake: FakeRunPod, capsys: pytest.CaptureFixture[str]) -> None:
    code = await asyncio.to_thread(main, ["deploy", "--config", str(ROOT / "runpod.toml"), "--api-key", "wrong"])
    assert code == 2 and "API key" in capsys.readouterr().err


async def test_scale_to_zero_stops_new_jobs_running(fake: FakeRunPod) -> None:
    runpod.api_key = "deploy-key"
    endpoint = await asyncio.to_thread(
        runpod.create_endpoint, "budgeted", "tpl-x", gpu_ids="ADA_24", workers_max=4, idle_timeout=9, flashboot=True
    )
    assert fake.registry.endpoints[endpoint["id"]]["flashBootType"] == "FLASHBOOT"
    await asyncio.to_thread(scale_to_zero, endpoint["id"], "deploy-key")
    saved = fake.registry.endpoints[endpoint["id"]]
    assert (saved["workersMin"], saved["workersMax"]) == (0, 0)
    assert (saved["idleTimeout"], saved["gpuIds"], saved["name"]) == (9, "ADA_24", "budgeted")  # the rest is kept
    assert saved["flashBootType"] == "FLASHBOOT"
    # jobs sent now wait in the queue: no worker may take them
    job = await asyncio.to_thread(lambda: runpod.Endpoint(endpoint["id"]).run({"prompt": "x"}))
    await asyncio.sleep(0.3)
    assert await asyncio.to_thread(job.status) == "IN_QUEUE"
    with pytest.raises(EndpointApiError, match="'nope' not found"):
        await asyncio.to_thread(scale_to_zero, "nope", "deploy-key")


def test_bad_endpoint_section_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match=r"endpoint.scaler_type"):
        load_endpoint_config(toml_with(tmp_path, **{'scaler_type = "QUEUE_DELAY"': 'scaler_type = "FAST"'}))
    with pytest.raises(ConfigFileError, match="workers_max"):
        load_endpoint_config(toml_with(tmp_path, **{"workers_max = 3": "workers_max = -1"}))
    with pytest.raises(ConfigFileError, match="cannot read"):
        load_endpoint_config(tmp_path / "absent.toml")


def test_dry_run_without_key_touches_no_api(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    monkeypatch.setenv("RUNPOD_API_BASE_URL", "http://127.0.0.1:9")  # nothing listens: any call would fail
    assert main(["deploy", "--config", str(ROOT / "runpod.toml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "workersMin" in out and "QUEUE_DELAY" in out
