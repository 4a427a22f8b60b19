"""The budget alert: a warning log line and, when BUDGET_ALERT_WEBHOOK is set, a JSON POST.

The budget decides when (once per day, atomically across workers); this module
only delivers. A webhook that fails is logged, never raised: the job that
crossed the threshold is still answered. The HTTP transport is injectable.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

log = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_S = 5.0


class Alerter:
    def __init__(
        self,
        webhook_url: str = "",
        *,
        endpoint_id: str = "",
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = WEBHOOK_TIMEOUT_S,
    ) -> None:
        self.webhook_url = webhook_url
        self.endpoint_id = endpoint_id
        self._transport = transport
        self._timeout = timeout
        self.sent: int = 0  # webhook POSTs that succeeded (for tests and the stats line)

    async def budget_threshold(self, state: dict[str, Any], threshold: float) -> None:
        """Announce that today's spend crossed `threshold` (a fraction) of the daily budget."""
        log.warning(
            "budget alert: %.4f USD spent of %.2f USD on %s (%.0f%% threshold crossed)",
            state.get("spent_usd", 0.0),
            state.get("limit_usd") or 0.0,
            state.get("day"),
            threshold * 100,
        )
        if not self.webhook_url:
            return
        payload = {
            "event": "budget_threshold",
            "endpoint_id": self.endpoint_id,
            "threshold": threshold,
            **state,
        }
        try:
            async with httpx.AsyncClient(transport=self._transport, timeout=self._timeout) as client:
                response = await client.post(self.webhook_url, json=payload)
                response.raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("budget alert webhook failed (%s: %s)", type(exc).__name__, exc)
            return
        self.sent += 1
