"""vLLM's OpenAI server stood in for by `FakeEngine`, as an ENGINE_COMMAND: ``python -m devtools.fake_vllm``.

A real worker (`python -m handler`) started with ``ENGINE_COMMAND="python -m devtools.fake_vllm"``
runs its whole path (engine start, /health, requests, streams) in seconds and without vLLM: the
platform's tests of RunPod's OpenAI route use it. It serves

    GET  /health                                         200 once listening
    GET  /v1/models                                      the served name
    POST /v1/completions, /v1/chat/completions           FakeEngine's answer (the prompt's words); with
                                                         "stream": true, its chunks as server-sent events

and takes vLLM's arguments (`--host`, `--port`, `--served-model-name`; the others are ignored).
FAKE_VLLM_TOKEN_SECONDS sets the time per token (default 0.01).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from aiohttp import web

from devtools.fake_engine import FakeEngine


def make_app(engine: FakeEngine) -> web.Application:
    async def health(_request: web.Request) -> web.StreamResponse:
        await engine.ensure_started()
        return web.Response()

    async def models(_request: web.Request) -> web.StreamResponse:
        return web.json_response(await engine.request("/v1/models"))

    async def generate(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if not body.get("stream"):
            return web.json_response(await engine.request(request.path, body))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        async for chunk in engine.stream(request.path, body):
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    app = web.Application()
    app.add_routes([
        web.get("/health", health),
        web.get("/v1/models", models),
        web.post("/v1/completions", generate),
        web.post("/v1/chat/completions", generate),
    ])  # fmt: skip
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="fake_vllm")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--served-model-name", default="fake-model")
    args, _ignored = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    per_token = float(os.environ.get("FAKE_VLLM_TOKEN_SECONDS", "0.01"))
    engine = FakeEngine(start_seconds=0.0, per_token_seconds=per_token, model_name=args.served_model_name)
    web.run_app(make_app(engine), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
