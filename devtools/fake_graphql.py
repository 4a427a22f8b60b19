"""The slice of RunPod's GraphQL API that the `runpod` SDK's management calls use.

Handles `saveEndpoint` (create, or update when the input has `id`),
`saveTemplate` and the `myself { endpoints }` query. The mutation's input
object literal is parsed with a small recursive-descent reader (strings,
numbers, booleans, enums, lists, objects); nothing else of GraphQL is needed.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

_OPERATION = re.compile(r"mutation\s*\w*\s*\{\s*(\w+)\s*\(\s*input\s*:\s*", re.S)
_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?")
_NAME = re.compile(r"[A-Za-z_]\w*")


class GraphQLInputError(ValueError):
    pass


class _Reader:
    def __init__(self, text: str, pos: int) -> None:
        self.text = text
        self.pos = pos

    def _skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t\r\n,":
            self.pos += 1

    def _expect(self, char: str) -> None:
        self._skip()
        if not self.text.startswith(char, self.pos):
            raise GraphQLInputError(f"expected {char!r} at offset {self.pos}: {self.text[self.pos : self.pos + 30]!r}")
        self.pos += 1

    def value(self) -> Any:
        self._skip()
        char = self.text[self.pos : self.pos + 1]
        if char == "{":
            return self.obj()
        if char == "[":
            self.pos += 1
            items: list[Any] = []
            while True:
                self._skip()
                if self.text.startswith("]", self.pos):
                    self.pos += 1
                    return items
                items.append(self.value())
        if char == '"':
            decoder = json.JSONDecoder()
            text, end = decoder.raw_decode(self.text, self.pos)
            self.pos = end
            return text
        number = _NUMBER.match(self.text, self.pos)
        if number:
            self.pos = number.end()
            return float(number.group()) if number.group(1) or number.group(2) else int(number.group())
        name = _NAME.match(self.text, self.pos)
        if name:
            self.pos = name.end()
            return {"true": True, "false": False, "null": None}.get(name.group(), name.group())
        raise GraphQLInputError(f"unexpected input at offset {self.pos}: {self.text[self.pos : self.pos + 30]!r}")

    def obj(self) -> dict[str, Any]:
        self._expect("{")
        result: dict[str, Any] = {}
        while True:
            self._skip()
            if self.text.startswith("}", self.pos):
                self.pos += 1
                return result
            name = _NAME.match(self.text, self.pos)
            if not name:
                raise GraphQLInputError(f"expected a field name at offset {self.pos}")
            self.pos = name.end()
            self._expect(":")
            result[name.group()] = self.value()


def parse_mutation(query: str) -> tuple[str, dict[str, Any]]:
    """(operation name, input object) of a `mutation { op(input: {...}) {...} }`."""
    match = _OPERATION.search(query)
    if not match:
        raise GraphQLInputError("not a mutation with an `input:` argument")
    return match.group(1), _Reader(query, match.end()).obj()


ENDPOINT_DEFAULTS: dict[str, Any] = {
    "gpuIds": "AMPERE_16",
    "networkVolumeId": "",
    "locations": "",
    "idleTimeout": 5,
    "scalerType": "QUEUE_DELAY",
    "scalerValue": 4,
    "workersMin": 0,
    "workersMax": 3,
    "allowedCudaVersions": "",
    "gpuCount": 1,
    "flashBootType": "OFF",
    "templateId": "",
}


@dataclass
class Registry:
    """Endpoints and templates created through the management API."""

    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def save_endpoint(self, data: dict[str, Any]) -> dict[str, Any]:
        endpoint_id = data.get("id")
        if endpoint_id:
            if endpoint_id not in self.endpoints:
                raise GraphQLInputError(f"endpoint {endpoint_id!r} does not exist")
            self.endpoints[endpoint_id].update(data)
            return self.endpoints[endpoint_id]
        if not data.get("name") or not data.get("templateId"):
            raise GraphQLInputError("saveEndpoint needs `name` and `templateId` to create an endpoint")
        record = {**ENDPOINT_DEFAULTS, **data, "id": f"ep-{next(self._ids):04d}"}
        self.endpoints[record["id"]] = record
        return record

    def save_template(self, data: dict[str, Any]) -> dict[str, Any]:
        if not data.get("name") or not data.get("imageName"):
            raise GraphQLInputError("saveTemplate needs `name` and `imageName`")
        record = {**data, "id": f"tpl-{next(self._ids):04d}"}
        self.templates[record["id"]] = record
        return record

    def execute(self, query: str) -> dict[str, Any]:
        """A GraphQL response document: {"data": ...} or {"errors": [...]}."""
        try:
            if re.search(r"\bmyself\b", query) and re.search(r"\bendpoints\b", query) and "mutation" not in query:
                return {"data": {"myself": {"endpoints": list(self.endpoints.values())}}}
            operation, data = parse_mutation(query)
            self.calls.append((operation, data))
            if operation == "saveEndpoint":
                return {"data": {"saveEndpoint": self.save_endpoint(data)}}
            if operation == "saveTemplate":
                return {"data": {"saveTemplate": self.save_template(data)}}
            raise GraphQLInputError(f"operation {operation!r} is not implemented by the local API")
        except GraphQLInputError as exc:
            return {"errors": [{"message": str(exc)}]}
