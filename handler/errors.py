"""Every error the worker raises, in one tree.

    WorkerError                      base; `.type` is the code jobs see
    ├── ConfigError                  bad settings (fails at start-up)
    ├── ValidationFailed             bad job input (names the field)
    ├── ModelNotFound                an OpenAI request's `model` is none of the served names
    ├── EngineError                  anything about the vLLM child process
    │   ├── EngineStartError         did not become healthy (carries its last log lines)
    │   ├── EngineCrashed            died or dropped the connection mid-request
    │   └── EngineRequestError       answered a request with an error status
    ├── BudgetExceeded               the day's budget cannot cover the job
    ├── BudgetUnavailable            budget store unreachable and BUDGET_FAIL_MODE=closed
    ├── StoreUnavailable             Redis unreachable or refusing (caught by the cache: a miss)
    └── InternalError                anything unexpected: logged with its traceback under `id`

Third-party exceptions are translated where they enter (``raise X(...) from exc``).
A job never sees a traceback: `WorkerError.to_dict()` is the error payload.
"""

from __future__ import annotations

from typing import Any

from core.errors import InputError


class WorkerError(Exception):
    type = "worker_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "field": self.field}


class ConfigError(WorkerError):
    type = "config_error"


class ValidationFailed(WorkerError):
    type = "validation_error"

    @classmethod
    def of(cls, exc: InputError) -> ValidationFailed:
        """The job's view of a contract error (core.contract raises InputError)."""
        return cls(exc.message, field=exc.field)


class ModelNotFound(WorkerError):
    """OpenAI's `model_not_found`: the request named a model this worker does not serve."""

    type = "model_not_found"


class EngineError(WorkerError):
    type = "engine_error"


class EngineStartError(EngineError):
    type = "engine_start_failed"

    def __init__(self, message: str, *, log_tail: list[str] | None = None) -> None:
        self.log_tail = list(log_tail or [])
        detail = "\n".join(self.log_tail[-20:])
        super().__init__(f"{message}\n--- engine log (last lines) ---\n{detail}" if detail else message)


class EngineCrashed(EngineError):
    type = "engine_crashed"


class EngineRequestError(EngineError):
    type = "engine_request_failed"

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class BudgetExceeded(WorkerError):
    type = "budget_exceeded"


class BudgetUnavailable(WorkerError):
    type = "budget_unavailable"


class StoreUnavailable(WorkerError):
    type = "store_unavailable"


class InternalError(WorkerError):
    """An unexpected failure inside a job. The caller gets its `id`; the log has the traceback."""

    type = "internal_error"

    def __init__(self, message: str, *, error_id: str) -> None:
        super().__init__(message)
        self.error_id = error_id

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "id": self.error_id}
