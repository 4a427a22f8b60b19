"""Shared fixtures. Engine fixtures start one real vLLM engine per session and share it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from devtools.redis_server import RedisClusterNodes, RedisServer, delete_namespace, existing_or_new, make_certs
from handler.app import App, create_app
from handler.store.base import Store
from handler.store.embedded import EmbeddedStore
from handler.store.redis_store import RedisStore
from tests.engine_support import require_model, settings_for

TEST_HOURLY_RATE = "3.6"  # USD per worker hour: a tenth of a cent per second, easy to check


@pytest.fixture(scope="session")
async def tiny_app(redis_url: str) -> AsyncIterator[App]:
    """A worker app over the tiny random model, with the shared cache in a real Redis;
    its engine starts on the first cache miss and serves the whole session."""
    require_model("tiny")
    namespace = f"tests-tiny-{uuid.uuid4().hex[:8]}"
    app = create_app(
        settings_for(
            "tiny",
            CACHE_NAMESPACE=namespace,
            BUDGET_NAMESPACE=namespace,
            REDIS_URL=redis_url,
            GPU_HOURLY_RATE=TEST_HOURLY_RATE,
        )
    )
    yield app
    await app.aclose()


# --- Redis and store fixtures (cache and budget tests) -------------------------------
# A real Redis: REDIS_URL when a server answers there, else a private redis-server
# started for the session. Each test gets its own namespace; the `store` fixture deletes
# that namespace's keys after it, and nothing else.


@pytest.fixture(scope="session")
def redis_server_info() -> Iterator[tuple[str, bool]]:
    with existing_or_new() as info:
        yield info


@pytest.fixture(scope="session")
def redis_url(redis_server_info: tuple[str, bool]) -> str:
    return redis_server_info[0]


@pytest.fixture
def namespace() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def redis_tls_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private TLS-only redis-server with a password, its certificates made for this run."""
    server = RedisServer(password="tls-pw", certs=make_certs(tmp_path_factory.mktemp("certs"))).start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """A private Redis Cluster of three primaries on this machine."""
    cluster = RedisClusterNodes(3).start()
    yield cluster.url
    cluster.stop()


REDIS = pytest.mark.redis
STORES = [pytest.param(p, marks=REDIS) for p in ("redis", "redis-tls", "redis-cluster")] + ["embedded"]


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, namespace: str) -> AsyncIterator[Store]:
    """The same tests run against every backend: Redis (plain, TLS with a password, a cluster) and embedded."""
    if request.param == "embedded":
        yield EmbeddedStore()
        return
    if request.param != "redis":  # private servers of this session, each test in its own namespace
        deployed = RedisStore(request.getfixturevalue(request.param.replace("-", "_") + "_url"))
        yield deployed
        await deployed.close()
        return
    url = request.getfixturevalue("redis_url")
    redis_store = RedisStore(url)
    yield redis_store
    await redis_store.close()
    # its own keys only: the server may be shared (REDIS_URL), and the session's tiny_app keeps its
    # cache and budget on the same private server
    await asyncio.to_thread(delete_namespace, url, namespace)


@pytest.fixture(scope="session")
async def smollm2_app() -> AsyncIterator[App]:
    """A worker app over the converted SmolLM2-135M-Instruct, with the default CPU engine settings."""
    require_model("smollm2")
    app = create_app(settings_for("smollm2", CACHE_NAMESPACE="tests-smollm2"))
    yield app
    await app.aclose()


# --- markers follow the fixtures a test uses ----------------------------------------
FIXTURE_MARKS = {
    "redis_url": ("redis",),
    "redis_server_info": ("redis",),
    "redis_tls_url": ("redis",),
    "redis_cluster_url": ("redis",),
    "tiny_app": ("engine", "redis"),
    "smollm2_app": ("engine", "realmodel"),
}


# --- slow tests: `make test-fast` leaves them out (with the engine's) -------------------------
# A file with () marks all its tests. Seconds measured on a 2-core machine (2026-12-07); what stays
# (about 90 s) keeps the money checks against outside counts: the ledger against /proc
# (test_ledger_bill, test_platform's ledger test), a worker's boot and exit (test_worker_lifetime),
# the budget's races on every store, and each mutation test of issue 22.
SLOW: dict[str, tuple[str, ...]] = {
    "test_cap_on_platform.py": (),  # real workers kept busy until a limit is spent: 43 s
    "test_tiers_platform.py": (),  # tiers of echo workers, time-to-start and cool-down waits: 26 s
    "test_tiny_model.py": (),  # builds the tiny model twice with torch: 18 s
    "test_quantize.py": (),  # AutoAWQ on CPU: 9 s
    "test_compat.py": ("test_every_flag_exists_in_the_engines_vllm",),  # the engine venv's vLLM parses them: 8 s
    "test_openai_route.py": (),  # worker processes behind the OpenAI routes: 12 s
    "test_budget_race.py": (),  # eight spawned processes: 4 s
    "test_platform.py": (  # echo workers scaled, killed, refreshed: 38 s (its ledger-vs-/proc test stays)
        "test_scale_from_zero_through_the_sdk_and_back_to_zero",
        "test_jobs_spread_over_workers_and_idle_scale_down_keeps_workers_min",
        "test_a_worker_killed_mid_job_has_the_job_retried_on_another_worker",
        "test_a_job_that_kills_every_worker_fails_after_the_retry_bound",
        "test_execution_timeout_times_the_job_out_and_stops_its_worker",
        "test_refresh_worker_from_a_plain_handler_replaces_the_worker",
        "test_generator_handler_streams_and_refreshes_only_through_the_sdk_config",
        "test_low_priority_and_no_capacity_leave_jobs_queued",
    ),
    "test_platform_api.py": (
        "test_cancel_reaches_the_running_job_and_workers_max_changes_live",  # 5 s
        "test_a_broken_worker_command_backs_off_and_reports_unhealthy",
    ),
    "test_contract.py": ("test_the_bound_holds_for_the_real_tokenizer",),  # loads tokenizers: 5 s
    "test_cache.py": (
        "test_single_flight_across_two_processes",  # spawned processes: 4 s
        "test_ttl_default_and_per_job",  # waits for entries to expire, on every store: 5 s
        "test_a_dead_holders_lock_lapses_and_a_waiter_takes_over",  # waits for locks to lapse: 2 s
    ),
    "test_deploy.py": ("test_scale_to_zero_keeps_flashboot_and_scales_back",),  # 4 s
    "test_client_fallback.py": ("test_callers_timeout_bounds_the_whole_call",),  # 2 s
    "test_fake_runpod.py": (
        "test_sdk_stream_and_aggregate",  # 2 s
        "test_env_variable_points_a_fresh_sdk_process_at_the_server",  # a fresh interpreter: 2 s
    ),
    "test_redis_eviction.py": ("test_every_primary_of_a_cluster_is_checked",),  # its own cluster: 3 s
    "test_sdk_loop.py": (  # the SDK's worker loop run until it takes (or does not take) jobs: 25 s
        "test_a_worker_whose_modifier_answers_zero_takes_no_job",
        "test_a_burst_of_short_jobs_finishes_without_the_sdks_one_second_stalls",
    ),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`-m "not redis"` and `-m "not engine"` deselect every test that needs those, marked by hand or not;
    `-m "not slow"` the tests listed in SLOW."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        for fixture, marks in FIXTURE_MARKS.items():
            if fixture in names:
                for mark in marks:
                    item.add_marker(mark)
        slow = SLOW.get(item.path.name)
        if slow is not None and (not slow or getattr(item, "originalname", item.name) in slow):
            item.add_marker(pytest.mark.slow)
