"""What the worker and the app need of an engine, as a structural type.

`handler.engine.EngineManager` (vLLM as a child process) is the engine the worker
runs; `devtools.fake_engine.FakeEngine` is an in-process one for unit tests of
the worker's money and error paths. Neither inherits from `Engine`: mypy checks
that each has these members with these types. Errors are `handler.errors`'s:
`EngineStartError` from `ensure_started`, `EngineCrashed`, `EngineRequestError`
and `ValidationFailed` (a 4xx answer) from `request` and `stream`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol


class Engine(Protocol):
    @property
    def ready(self) -> bool:
        """Running and answering: a request now needs no start."""
        ...

    @property
    def device(self) -> str:
        """`cpu` or `cuda` (part of the answers' fingerprint)."""
        ...

    @property
    def starting_since(self) -> float | None:
        """The clock when the start in progress began; None when none is."""
        ...

    @property
    def last_start_seconds(self) -> float | None:
        """How long the last successful start took; None before one."""
        ...

    @property
    def last_start_phases(self) -> dict[str, float]:
        """The last successful start's seconds by phase."""
        ...

    @property
    def start_failures(self) -> int:
        """Failed starts in a row."""
        ...

    @property
    def needs_refresh(self) -> bool:
        """Too many failed starts in a row: the worker should be replaced."""
        ...

    async def ensure_started(self) -> float:
        """Start the engine unless it runs; the seconds this call spent starting it."""
        ...

    async def request(self, route: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """One non-streamed request (GET when `body` is None): the engine's JSON answer."""
        ...

    def stream(self, route: str, body: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """A streamed request: each chunk's JSON, running usage in every chunk."""
        ...

    async def aclose(self) -> None:
        """Stop the engine for good (the app's shutdown)."""
        ...
