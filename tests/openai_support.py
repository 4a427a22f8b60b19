"""Helpers for the tests of RunPod's OpenAI route (/v2/{endpoint}/openai/v1) with the users' own clients.

`openai_endpoint` starts an endpoint of real workers (`python -m handler`) on the local platform
and hands back the `openai` clients pointed at its route, as a user points them at
``https://api.runpod.ai/v2/ENDPOINT_ID/openai/v1``. `sse_chunks` reads the pieces a streamed
OpenAI job gave the runpod SDK (server-sent-event strings, or lists of chunks).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest

from devtools.platform import Endpoint, EndpointConfig, Platform
from tests.engine_support import worker_env
from tests.platform_support import API_KEY, REPO_ROOT, running_platform

# vLLM stood in for by the fake engine's HTTP server: a real worker, its engine started in a second
FAKE_VLLM = f"{sys.executable} -m devtools.fake_vllm"


@dataclass
class OpenAIEndpoint:
    endpoint: Endpoint
    client: openai.OpenAI  # call it from a thread (asyncio.to_thread): the platform runs in this loop
    aclient: openai.AsyncOpenAI


def clients(platform: Platform, endpoint_id: str) -> tuple[openai.OpenAI, openai.AsyncOpenAI]:
    base_url = f"{platform.url}/v2/{endpoint_id}/openai/v1"
    # no retries: a test sees each answer as it came (a retry would hide a status the route gave)
    return (openai.OpenAI(base_url=base_url, api_key=API_KEY, max_retries=0),
            openai.AsyncOpenAI(base_url=base_url, api_key=API_KEY, max_retries=0))  # fmt: skip


def add_openai_endpoint(platform: Platform, endpoint_id: str, model: str = "tiny", **env: str) -> OpenAIEndpoint:
    config = EndpointConfig(
        worker_command=[sys.executable, "-m", "handler"],
        env=worker_env(model, GPU_HOURLY_RATE="3.6", **env),
        workers_max=1,
        idle_timeout=600.0,  # one warm worker serves the whole module
        cwd=REPO_ROOT,
    )
    ep = platform.add_endpoint(endpoint_id, config)
    client, aclient = clients(platform, endpoint_id)
    return OpenAIEndpoint(ep, client, aclient)


@contextlib.asynccontextmanager
async def module_platform() -> AsyncIterator[Platform]:
    """A platform for a whole module, with the runpod SDK pointed at it."""
    with pytest.MonkeyPatch.context() as patch:
        async with running_platform(patch) as platform:
            yield platform


def sse_chunks(pieces: list[Any]) -> list[dict[str, Any]]:
    """The chunks of a streamed OpenAI job's pieces: strings of server-sent events ([DONE] last, once),
    or lists of chunk objects (RAW_OPENAI_OUTPUT=0)."""
    if all(isinstance(p, list) for p in pieces):
        return [chunk for piece in pieces for chunk in piece]
    data = [e.removeprefix("data: ") for p in pieces for e in p.split("\n\n") if e]
    assert data[-1] == "[DONE]" and data.count("[DONE]") == 1, data
    return [json.loads(d) for d in data[:-1]]


def chunks_text(chunks: list[Any]) -> str:
    """The text of choice 0 of chat or completion chunks (dicts, or the openai package's objects)."""
    out = []
    for chunk in chunks:
        c = chunk if isinstance(chunk, dict) else chunk.model_dump()
        for choice in c.get("choices") or []:
            if choice.get("index", 0) == 0:
                out.append((choice.get("delta") or {}).get("content") or choice.get("text") or "")
    return "".join(out)


def extra(obj: Any) -> dict[str, Any]:
    """The fields the openai package kept beside OpenAI's own (the worker's `cached`, `cost_usd`...)."""
    return dict(obj.model_extra or {})
