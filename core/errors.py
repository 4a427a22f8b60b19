"""The core's errors. Each part (handler, builder, client) catches `CoreError` where a user
sees it and reports it in its own terms: a worker as a typed job error, a CLI as one line."""

from __future__ import annotations

from pathlib import Path


class CoreError(Exception):
    """Base of every error raised by `core`."""


class PriceTableError(CoreError):
    """A price file is unreadable or invalid, or names no such GPU or API."""


class ManifestError(CoreError):
    """A manifest is missing, unreadable or invalid; the message names the path and problem."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class EndpointApiError(CoreError):
    """RunPod's endpoint API refused a call, was unreachable, or has no such endpoint."""


class InputError(CoreError):
    """A job's input breaks the contract; `field` names where (``requests.1.sampling_params.top_p``)."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
