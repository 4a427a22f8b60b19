"""The short fault run: mixed and malformed jobs through real workers on the local platform while Redis is
killed and restarted, its scripts flushed, an engine and a worker SIGKILLed (devtools.faults)."""

from __future__ import annotations

import pytest

from devtools.faults import fault_run
from tests.prerequisites import needs_engine_venv, needs_tiny

pytestmark = [pytest.mark.engine, pytest.mark.redis, needs_tiny, needs_engine_venv]


async def test_every_job_ends_typed_and_the_budget_stays_the_bill() -> None:
    report = await fault_run(160, workers=2, seed=4, concurrency=24)
    print(report.to_dict())
    assert report.problems() == []
    assert [what for _, what in report.faults] == ["redis_kill", "script_flush", "engine_kill", "worker_kill"]
    assert sum(report.statuses.values()) == 160 and report.statuses["COMPLETED"] > 100
    assert report.error_types["validation_error"] == report.malformed == 16  # every malformed job, nothing else
    assert report.cached_entries > 0  # answers were cached, and none of them is an error
    assert any(w["exit"] == -9 for w in report.workers)  # the killed worker, replaced
    assert len(report.workers) >= 3
