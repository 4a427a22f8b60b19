"""`RoutedClient`: size routing in front of the spot/on-demand fallback, sync and async."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from client.endpoint_api import AsyncEndpointAPI, EndpointAPI
from client.fallback import FallbackClient, FallbackResult, Policy
from client.fallback_async import AsyncFallbackClient
from client.fallback_policy import ConfigReader
from client.routing import Router


class RoutedClient:
    def __init__(
        self,
        router: Router,
        *,
        api: EndpointAPI | None = None,
        policy: Policy | None = None,
        endpoints: ConfigReader | None = None,
    ) -> None:
        self.router = router
        self.api = api or EndpointAPI()
        self._clients = {
            name: FallbackClient(pair, api=self.api, policy=policy, endpoints=endpoints)
            for name, pair in router.tiers.items()
        }

    def run_sync(self, job_input: Mapping[str, Any], timeout: float | None = None) -> FallbackResult:
        name, _pair = self.router.route(job_input)
        return dataclasses.replace(self._clients[name].run_sync(job_input, timeout), route=name)

    def close(self) -> None:
        self.api.close()


class AsyncRoutedClient:
    def __init__(
        self,
        router: Router,
        *,
        api: AsyncEndpointAPI | None = None,
        policy: Policy | None = None,
        endpoints: ConfigReader | None = None,
    ) -> None:
        self.router = router
        self.api = api or AsyncEndpointAPI()
        self._clients = {
            name: AsyncFallbackClient(pair, api=self.api, policy=policy, endpoints=endpoints)
            for name, pair in router.tiers.items()
        }

    async def run_sync(self, job_input: Mapping[str, Any], timeout: float | None = None) -> FallbackResult:  # noqa: ASYNC109
        name, _pair = self.router.route(job_input)
        return dataclasses.replace(await self._clients[name].run_sync(job_input, timeout), route=name)

    async def aclose(self) -> None:
        await self.api.aclose()
