"""Managed-Redis shapes beyond the store suite (which runs on all of them): TLS that checks the server's
certificate and the password, and a three-node Redis Cluster whose budget days spread over the nodes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest
import redis

from handler.budget import Budget
from handler.errors import ConfigError, StoreUnavailable
from handler.settings import load_settings
from handler.store.redis_store import RedisStore

pytestmark = pytest.mark.redis
REPO = Path(__file__).resolve().parents[1]


async def test_tls_checks_the_certificate_and_the_password(redis_tls_url: str) -> None:
    good = RedisStore(redis_tls_url)
    try:
        await good.set("tls-check", b"v", 10_000)
        assert await good.get("tls-check") == b"v"
    finally:
        await good.close()
    plain_ca = redis_tls_url.split("?", maxsplit=1)[0]  # the system's CAs do not know the test CA
    wrong = {
        plain_ca: "certificate verify failed",
        redis_tls_url.replace(":tls-pw@", ":nope@"): "invalid username-password pair",
        redis_tls_url.replace("rediss://", "redis://").split("?", maxsplit=1)[0]: "unreachable",  # no TLS: no answer
    }
    for url, problem in wrong.items():
        store = RedisStore(url)
        try:
            with pytest.raises(StoreUnavailable, match=problem):
                await store.get("tls-check")
        finally:
            await store.close()


async def test_budget_days_spread_over_the_cluster_and_every_tool_reads_them(redis_cluster_url: str) -> None:
    """Each budget day's keys share one hash tag, so its scripts run on one node; different
    namespaces land on different nodes, and `handler.stats spend` reads them through the cluster."""
    namespaces = [f"c{i}-{uuid.uuid4().hex[:6]}" for i in range(12)]
    store = RedisStore(redis_cluster_url)
    try:
        for ns in namespaces:
            budget = Budget(store, load_settings({"BUDGET_NAMESPACE": ns, "DAILY_BUDGET_USD": "1"}).budget, holder="w")
            await budget.settle(await budget.reserve("job", 0.25), 0.125, 0.0)
            assert (await budget.state()).spent_usd == pytest.approx(0.125)
    finally:
        await store.close()
    port = int(redis_cluster_url.rsplit(":", 1)[1])
    client = redis.RedisCluster(host="127.0.0.1", port=port)
    try:
        primaries = [(node.host, node.port) for node in client.get_primaries()]
    finally:
        client.close()
    per_node = {}
    for host, node_port in primaries:
        node = redis.Redis(host=host, port=node_port)
        per_node[node_port] = node.dbsize()
        node.close()
    assert len(per_node) == 3 and sum(1 for n in per_node.values() if n) >= 2, per_node  # spread, not one node
    env = {**os.environ, "REDIS_URL": redis_cluster_url, "BUDGET_NAMESPACE": namespaces[0]}
    command = [sys.executable, "-m", "handler.stats", "spend", "--json"]
    done = await asyncio.to_thread(subprocess.run, command, cwd=REPO, env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    (row,) = [r for r in orjson.loads(done.stdout)["rows"] if r.get("spent_usd")]
    assert row["spent_usd"] == pytest.approx(0.125)


def test_cluster_and_tls_urls_are_accepted_and_odd_schemes_named() -> None:
    for url in ("redis+cluster://10.0.0.5:7000", "rediss+cluster://:pw@cache.example.com:6380"):
        assert load_settings({"REDIS_URL": url}).redis_url == url
    with pytest.raises(ConfigError, match=r"REDIS_URL.*scheme 'redis-cluster' is not one of"):
        load_settings({"REDIS_URL": "redis-cluster://10.0.0.5:7000"})
