"""The budget alert: a warning log line and, when BUDGET_ALERT_WEBHOOK is set, a JSON POST.

Two alerts, each once per day across all workers: spend reached the threshold
(`budget_threshold`), and the day's first refusal (`budget_refused`). The budget
decides when (atomically across workers); this module only delivers. A webhook
that fails is retried with exponential backoff (WEBHOOK_ATTEMPTS tries); a final
failure is logged with the alert's figures, never raised: the job that crossed
the threshold is still answered. The HTTP
transport is injectable.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

log = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_S = 5.0
WEBHOOK_ATTEMPTS = 4
WEBHOOK_BACKOFF_S = 1.0  # then 2 s, 4 s


class Alerter:
    def __init__(
        self,
        webhook_url: str = "",
        *,
        endpoint_id: str = "",
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = WEBHOOK_TIMEOUT_S,
        attempts: int = WEBHOOK_ATTEMPTS,
        backoff: float = WEBHOOK_BACKOFF_S,
    ) -> None:
        self._attempts = max(1, attempts)
        self._backoff = backoff
        self.webhook_url = webhook_url
        self.endpoint_id = endpoint_id
        self._transport = transport
        self._timeout = timeout
        self.sent: int = 0  # webhook POSTs that succeeded (for tests and the stats line)

    async def budget_threshold(self, state: dict[str, Any], threshold: float) -> None:
        """Announce that today's spend reached `threshold` (a fraction) of the daily budget."""
        log.warning(
            "budget alert: %.4f USD spent of %.2f USD on %s (%.0f%% threshold crossed)",
            state.get("spent_usd", 0.0),
            state.get("limit_usd") or 0.0,
            state.get("day"),
            threshold * 100,
        )
        await self._post({"event": "budget_threshold", "endpoint_id": self.endpoint_id, "threshold": threshold,
                          **state})  # fmt: skip

    async def budget_refused(self, state: dict[str, Any]) -> None:
        """Announce the day's first refusal: a job did not fit under what is left of the budget."""
        log.warning(
            "budget alert: first refusal of %s: %.4f USD spent and %.4f USD reserved of %.2f USD",
            state.get("day"),
            state.get("spent_usd", 0.0),
            state.get("reserved_usd", 0.0),
            state.get("limit_usd") or 0.0,
        )
        await self._post({"event": "budget_refused", "endpoint_id": self.endpoint_id, **state})

    async def _post(self, payload: dict[str, Any]) -> None:
        if not self.webhook_url:
            return
        async with httpx.AsyncClient(transport=self._transport, timeout=self._timeout) as client:
            for attempt in range(1, self._attempts + 1):
                try:
                    response = await client.post(self.webhook_url, json=payload)
                    response.raise_for_status()
                except httpx.HTTPError as exc:
                    if attempt == self._attempts:
                        log.error(
                            "budget alert webhook failed after %d attempts (%s: %s); the alert was: %s",
                            attempt, type(exc).__name__, exc, payload,
                        )  # fmt: skip
                        return
                    log.warning("budget alert webhook failed (%s: %s); retrying", type(exc).__name__, exc)
                    await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
                    continue
                self.sent += 1
                return
