"""Which requests the cache may answer, and the key of each (pure functions).

The key is the SHA-256 of canonical orjson (sorted keys at every level) of:
the key format version, the deployment namespace, the model fingerprint (model
id, revision, quantization, dtype and every engine setting that changes
answers), the route, and the request body as sent to vLLM (the whole prompt or
all messages and every sampling parameter, defaults already filled in). Numbers
are normalised so ``0`` and ``0.0`` are the same value. Only the delivery keys
("stream", "stream_options") are left out: a streamed and a plain job share an
entry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

KEY_VERSION = 1
DELIVERY_KEYS = frozenset({"stream", "stream_options"})


def is_cacheable(body: Mapping[str, Any]) -> bool:
    """Deterministic requests only: temperature explicitly 0 or a fixed seed, one choice."""
    n = body.get("n", 1)
    if n is not None and _number(n) != 1:
        return False
    best_of = body.get("best_of")
    if best_of is not None and _number(best_of) != 1:
        return False
    temperature = body.get("temperature")
    greedy = temperature is not None and not isinstance(temperature, bool) and _number(temperature) == 0
    seeded = body.get("seed") is not None
    return greedy or seeded


def _number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    return float(value)


def canonical(value: Any) -> Any:
    """The value with integral floats as ints (so 0 == 0.0 in the key), recursively."""
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    return str(value)


def cache_key(namespace: str, fingerprint: Mapping[str, Any], route: str, body: Mapping[str, Any]) -> str:
    """Hex SHA-256 naming the answer to `body` on `route` from the fingerprinted model."""
    payload = {
        "v": KEY_VERSION,
        "ns": namespace,
        "model": canonical(fingerprint),
        "route": route,
        "body": canonical({k: v for k, v in body.items() if k not in DELIVERY_KEYS}),
    }
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()
