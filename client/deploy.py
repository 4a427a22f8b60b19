"""`python -m client deploy [--dry-run]`: create or update the endpoint from runpod.toml's `[endpoint]`.

Over RunPod's REST API v2 through `core.endpoints` (no GraphQL). The section
holds scale-to-zero defaults (`workers_min = 0`, a small `workers_max`, a short
`idle_timeout`, `scaler_type = "QUEUE_DELAY"`, FlashBoot on). The endpoint is
looked up by name: when none has it, one is created (`POST /v2/serverless`)
from `image_name`, or from the container settings of the template
`template_id` (its image, env, args, ports; runpod.toml's fields win, env is
merged per key); when one has it, only the fields that differ are sent
(`PATCH /v2/serverless/{id}`), env, image and template changes included.
`--dry-run` prints the plan (a create's body, an update's field / current /
wanted rows) and changes nothing.

The execution timeout is not a setting of its own: the worker starts its
engine lazily, inside the first job, so a job may take the engine's start
timeout plus one request's timeout: `ENGINE_START_TIMEOUT +
ENGINE_REQUEST_TIMEOUT`, read from `[endpoint.env]`, else the worker's own
defaults (`handler.settings`), 600 s + 600 s. RunPod's default, 600 s, would
time out a first job whose engine start is slow.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from client.errors import ConfigFileError, DeployError
from core.endpoints import (
    create_endpoint,
    diff_rows,
    endpoint_diff,
    find_endpoint_by_name,
    get_template,
    update_endpoint,
)
from core.tables import as_json, table

FlashBoot = Literal["OFF", "FLASHBOOT", "PRIORITY_FLASHBOOT"]
CUDA_VERSION = re.compile(r"^\d+\.\d+$")
TIMEOUT_VARS = ("ENGINE_START_TIMEOUT", "ENGINE_REQUEST_TIMEOUT")
REST_IDLE_TIMEOUT_S = 10  # REST create's idle timeout when none is given (REQUEST_COUNT scaling refuses one)
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|KEY", re.IGNORECASE)
Action = Literal["create", "update", "unchanged", "unknown"]


def worker_timeout_defaults() -> dict[str, float]:
    """The worker's own defaults for ENGINE_START_TIMEOUT and ENGINE_REQUEST_TIMEOUT (seconds)."""
    from handler.settings import Settings  # the one source of the worker's defaults

    return {name: float(Settings.model_fields[name.lower()].default) for name in TIMEOUT_VARS}


class EndpointConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    image_name: str = ""
    template_id: str = ""
    dockerfile: str = "Dockerfile"  # what builds `image_name` (checked to exist; not sent)
    gpu_ids: list[str] = Field(min_length=1, description="RunPod GPU pool ids in priority order, e.g. ADA_24")
    gpu_count: int = Field(1, ge=1)
    allowed_cuda_versions: list[str] = Field(default_factory=list, description="`major.minor`; empty: any")
    workers_min: int = Field(0, ge=0)
    workers_max: int = Field(3, ge=0)
    idle_timeout: int = Field(5, ge=1, le=3600)
    scaler_type: Literal["QUEUE_DELAY", "REQUEST_COUNT"] = "QUEUE_DELAY"
    scaler_value: float = Field(4, ge=0.5)
    flashboot: FlashBoot = "FLASHBOOT"
    data_center_ids: list[str] = Field(default_factory=list)
    network_volumes: list[str] = Field(default_factory=list)
    container_disk_in_gb: int = Field(20, ge=1)
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("flashboot", mode="before")
    @classmethod
    def _flashboot(cls, value: Any) -> Any:
        if isinstance(value, bool):  # `flashboot = true` as the section once had it
            return "FLASHBOOT" if value else "OFF"
        return value

    @field_validator("allowed_cuda_versions")
    @classmethod
    def _cuda(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not CUDA_VERSION.match(v)]
        if bad:
            raise ValueError(f"CUDA versions are `major.minor`, got {bad}")
        return value

    @model_validator(mode="after")
    def _check(self) -> EndpointConfig:
        if not (self.template_id or self.image_name):
            raise ValueError("give `image_name`, or `template_id` to take the image from that template")
        if self.workers_max < self.workers_min:
            raise ValueError(f"workers_max ({self.workers_max}) is below workers_min ({self.workers_min})")
        if self.scaler_type == "REQUEST_COUNT" and self.scaler_value != int(self.scaler_value):
            raise ValueError(f"scaler_value for REQUEST_COUNT is a whole number of requests, got {self.scaler_value}")
        for name in TIMEOUT_VARS:
            raw = self.env.get(name)
            if raw is not None and not _positive(raw):
                raise ValueError(f"env.{name} must be a positive number of seconds, got {raw!r}")
        return self

    def execution_timeout_ms(self) -> int:
        """ENGINE_START_TIMEOUT + ENGINE_REQUEST_TIMEOUT: the env's values, else the worker's defaults."""
        defaults = worker_timeout_defaults()
        return round(sum(float(self.env.get(name, defaults[name])) for name in TIMEOUT_VARS) * 1000)

    def endpoint_env(self) -> dict[str, str]:
        """What the worker's budget must know of the endpoint and cannot read without an API key: its
        workers max (the margin for workers it may still start) and idle timeout (each worker's
        billed tail). The endpoint's own values, over any given in [endpoint.env]."""
        idle = self.idle_timeout if self.scaler_type == "QUEUE_DELAY" else REST_IDLE_TIMEOUT_S
        return {"ENDPOINT_WORKERS_MAX": str(max(1, self.workers_max)), "ENDPOINT_IDLE_TIMEOUT": str(idle)}

    def body(self, template: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The REST v2 create body; with `template`, its container settings under runpod.toml's."""
        template = template or {}
        image = self.image_name or str(template.get("image") or f"<the image of template {self.template_id}>")
        workers: dict[str, Any] = {"min": self.workers_min, "max": self.workers_max}
        if self.scaler_type == "QUEUE_DELAY":  # RunPod refuses an idle timeout beside REQUEST_COUNT scaling
            workers["idleTimeout"] = self.idle_timeout
        scaling: dict[str, Any] = (
            {"type": "QUEUE_DELAY", "queueDelay": self.scaler_value}
            if self.scaler_type == "QUEUE_DELAY"
            else {"type": "REQUEST_COUNT", "requestCount": int(self.scaler_value)}
        )
        body: dict[str, Any] = {"name": self.name, "type": "QUEUE", "image": image}
        body.update({k: template[k] for k in ("args", "ports", "registry") if template.get(k)})
        body.update(
            disk=self.container_disk_in_gb,
            env={**(template.get("env") or {}), **self.env, **self.endpoint_env()},
            gpu={
                "pools": list(self.gpu_ids),
                "count": self.gpu_count,
                "allowedCudaVersions": list(self.allowed_cuda_versions or template.get("allowedCudaVersions") or []),
            },
            workers=workers,
            scaling=scaling,
            timeout=self.execution_timeout_ms(),
            flashboot=self.flashboot,
            dataCenterIds=list(self.data_center_ids),
            networkVolumes=list(self.network_volumes),
        )
        return body


def _positive(raw: str) -> bool:
    try:
        return float(raw) > 0
    except ValueError:
        return False


def load_endpoint_config(path: Path) -> EndpointConfig:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigFileError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"{path}: not valid TOML: {exc}") from exc
    if "endpoint" not in data:
        raise ConfigFileError(f"{path}: no [endpoint] section")
    try:
        return EndpointConfig.model_validate(data["endpoint"])
    except ValidationError as exc:
        problems = "; ".join(
            f"endpoint.{'.'.join(map(str, e['loc'])) or '(section)'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigFileError(f"{path}: {problems}") from exc


@dataclass
class DeployPlan:
    """What deploy would do: `body` is a create's whole body or an update's PATCH body."""

    action: Action
    body: dict[str, Any]
    endpoint_id: str | None = None
    rows: list[tuple[str, Any, Any]] = field(default_factory=list)  # an update's (field, current, wanted)


def plan(config: EndpointConfig, api_key: str | None, base_url: str | None = None) -> DeployPlan:
    """What deploy would do; reads the endpoint (and the template) when an API key is given, changes nothing."""
    if not api_key:
        return DeployPlan("unknown", config.body())
    template = get_template(config.template_id, api_key=api_key, base_url=base_url) if config.template_id else None
    if template is not None and not (config.image_name or template.get("image")):
        raise DeployError(f"template {config.template_id!r} has no image; set image_name in [endpoint]")
    wanted = config.body(template)
    existing = find_endpoint_by_name(config.name, api_key=api_key, base_url=base_url)
    if existing is None:
        return DeployPlan("create", wanted)
    changes = endpoint_diff(existing, wanted)
    endpoint_id = str(existing["id"])
    return DeployPlan("update" if changes else "unchanged", changes, endpoint_id, diff_rows(existing, changes))


def apply(deploy_plan: DeployPlan, api_key: str, base_url: str | None = None) -> dict[str, Any] | None:
    """Carry the plan out: the endpoint afterwards, None when nothing had to change."""
    if deploy_plan.action == "create":
        return create_endpoint(deploy_plan.body, api_key=api_key, base_url=base_url)
    if deploy_plan.action == "update" and deploy_plan.endpoint_id:
        return update_endpoint(deploy_plan.endpoint_id, deploy_plan.body, api_key=api_key, base_url=base_url)
    return None


def _shown(name: str, value: Any) -> Any:
    """A value as printed: secrets in env masked (a `{{ RUNPOD_SECRET_... }}` reference is shown), lists as JSON."""
    key = name.removeprefix("env.")
    if name.startswith("env.") and SECRET_NAME.search(key) and isinstance(value, str) and "{{" not in value:
        return "***"
    if name == "env" and isinstance(value, dict):
        return {k: _shown(f"env.{k}", v) for k, v in value.items()}
    if isinstance(value, list | dict):
        return json.dumps(value)
    return value


def _flat(body: Mapping[str, Any]) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in body.items():
        if isinstance(value, dict) and value:
            rows += [(f"{key}.{k}", v) for k, v in value.items()]
        else:
            rows.append((key, value))
    return rows


def describe(deploy_plan: DeployPlan, name: str) -> str:
    where = f"endpoint {name!r}" + (f" ({deploy_plan.endpoint_id})" if deploy_plan.endpoint_id else "")
    if deploy_plan.action == "unchanged":
        return f"deploy plan: {where} is up to date; nothing to change"
    if deploy_plan.action == "update":
        rows = [(f, _shown(f, old), _shown(f, new)) for f, old, new in deploy_plan.rows]
        return f"deploy plan: update {where}, {len(rows)} change(s)\n" + table(["field", "current", "wanted"], rows)
    action = "create" if deploy_plan.action == "create" else "create or update (no RUNPOD_API_KEY: not looked up)"
    rows2 = [(f, _shown(f, v)) for f, v in _flat(deploy_plan.body)]
    return f"deploy plan: {action} {where}\n" + table(["field", "value"], rows2)


def cmd_deploy(args: argparse.Namespace) -> int:
    config = load_endpoint_config(Path(args.config))
    api_key = args.api_key or os.environ.get("RUNPOD_API_KEY") or ""
    the_plan = plan(config, api_key or None)
    applied = not args.dry_run and bool(api_key)
    saved = apply(the_plan, api_key) if applied else None
    if args.json:
        print(
            as_json(
                {
                    "action": the_plan.action,
                    "endpoint_id": (saved or {}).get("id", the_plan.endpoint_id),
                    "body": the_plan.body,
                    "changes": [{"field": f, "current": old, "wanted": new} for f, old, new in the_plan.rows],
                    "applied": applied and the_plan.action in ("create", "update"),
                }
            )
        )
    else:
        print(describe(the_plan, config.name))
        if saved is not None:
            print(f"{the_plan.action}d endpoint {saved.get('id')} ({config.name})")
        elif args.dry_run:
            print("dry run: nothing was changed")
    if not api_key and not args.dry_run:
        print("error: set RUNPOD_API_KEY (or --api-key) to deploy", file=sys.stderr)
        return 2
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("deploy", help="create or update the endpoint from runpod.toml's [endpoint] section")
    p.add_argument("--config", default="runpod.toml")
    p.add_argument("--dry-run", action="store_true", help="print the plan (the diff of an update), change nothing")
    p.add_argument("--api-key", help="RunPod API key (default: env RUNPOD_API_KEY)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_deploy)
