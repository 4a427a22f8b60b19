"""`python -m client deploy [--dry-run]`: create or update the endpoint from runpod.toml's `[endpoint]`.

The section holds scale-to-zero defaults (`workers_min = 0`, a small
`workers_max`, a short `idle_timeout`, `scaler_type = "QUEUE_DELAY"`,
FlashBoot on). An endpoint with the same name is updated in place; otherwise
one is created with `runpod.create_endpoint` (after `runpod.create_template`
from `image_name` when no `template_id` is given). `--dry-run` prints the plan
and changes nothing.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from client.errors import ConfigFileError, DeployError
from core.endpoints import find_endpoint, save_endpoint
from core.tables import as_json, table


class EndpointConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    template_id: str = ""
    image_name: str = ""
    dockerfile: str = "Dockerfile"  # what builds `image_name` (checked to exist; not sent)
    gpu_ids: list[str] = Field(min_length=1, description="RunPod GPU pool ids, e.g. ADA_24, AMPERE_24")
    gpu_count: int = Field(1, ge=1)
    workers_min: int = Field(0, ge=0)
    workers_max: int = Field(3, ge=0)
    idle_timeout: int = Field(5, ge=1)
    scaler_type: Literal["QUEUE_DELAY", "REQUEST_COUNT"] = "QUEUE_DELAY"
    scaler_value: int = Field(4, ge=1)
    flashboot: bool = True
    network_volume_id: str = ""
    locations: str = ""
    container_disk_in_gb: int = Field(20, ge=1)
    env: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> EndpointConfig:
        if not (self.template_id or self.image_name):
            raise ValueError("give `template_id` or `image_name` (deploy then creates a template from it)")
        if self.workers_max < self.workers_min:
            raise ValueError(f"workers_max ({self.workers_max}) is below workers_min ({self.workers_min})")
        return self

    def fields(self, template_id: str) -> dict[str, Any]:
        """The `saveEndpoint` input (GraphQL names)."""
        return {
            "name": self.name,
            "templateId": template_id,
            "gpuIds": ",".join(self.gpu_ids),
            "gpuCount": self.gpu_count,
            "networkVolumeId": self.network_volume_id,
            "locations": self.locations,
            "idleTimeout": self.idle_timeout,
            "scalerType": self.scaler_type,
            "scalerValue": self.scaler_value,
            "workersMin": self.workers_min,
            "workersMax": self.workers_max,
            "flashBootType": "FLASHBOOT" if self.flashboot else "OFF",
        }


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
    action: Literal["create", "update", "unknown"]
    fields: dict[str, Any]
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    create_template: bool = False
    endpoint_id: str | None = None


def plan(config: EndpointConfig, api_key: str | None) -> DeployPlan:
    """What deploy would do; looks the endpoint up by name when an API key is given (read-only)."""
    template = config.template_id or "<new template>"
    if not api_key:
        return DeployPlan("unknown", config.fields(template), create_template=not config.template_id)
    existing = find_endpoint(api_key, name=config.name)
    if existing is None:
        return DeployPlan("create", config.fields(template), create_template=not config.template_id)
    wanted = config.fields(config.template_id or str(existing.get("templateId", "")))
    changes = {k: (existing.get(k), v) for k, v in wanted.items() if existing.get(k) != v}
    return DeployPlan("update", {"id": existing["id"], **wanted}, changes, endpoint_id=str(existing["id"]))


def apply(config: EndpointConfig, deploy_plan: DeployPlan, api_key: str) -> dict[str, Any]:
    import runpod

    runpod.api_key = api_key  # the SDK's create_* calls read the module's key
    try:
        if deploy_plan.action == "update":
            return save_endpoint(deploy_plan.fields, api_key)
        template_id = config.template_id
        if not template_id:
            template = runpod.create_template(
                name=f"{config.name}-template",
                image_name=config.image_name,
                is_serverless=True,
                container_disk_in_gb=config.container_disk_in_gb,
                env=config.env or None,
            )
            template_id = template["id"]
        f = config.fields(template_id)
        created: dict[str, Any] = runpod.create_endpoint(
            name=f["name"],
            template_id=template_id,
            gpu_ids=f["gpuIds"],
            network_volume_id=config.network_volume_id or None,
            locations=config.locations or None,
            idle_timeout=f["idleTimeout"],
            scaler_type=f["scalerType"],
            scaler_value=f["scalerValue"],
            workers_min=f["workersMin"],
            workers_max=f["workersMax"],
            flashboot=config.flashboot,
            gpu_count=f["gpuCount"],
        )
    except runpod.error.QueryError as exc:
        raise DeployError(f"RunPod API refused the deploy: {exc}") from exc
    return created


def cmd_deploy(args: argparse.Namespace) -> int:
    config = load_endpoint_config(Path(args.config))
    api_key = args.api_key or os.environ.get("RUNPOD_API_KEY") or ""
    the_plan = plan(config, api_key or None)
    if args.dry_run or not api_key:
        if args.json:
            print(
                as_json(
                    {
                        "action": the_plan.action,
                        "fields": the_plan.fields,
                        "create_template": the_plan.create_template,
                        "changes": the_plan.changes,
                    }
                )
            )
        else:
            action = the_plan.action if api_key else "create or update (no RUNPOD_API_KEY: not looked up)"
            print(f"deploy plan: {action} endpoint {config.name!r}")
            if the_plan.create_template:
                print(f"  first create a template from image {config.image_name!r}")
            print(table(["field", "value"], sorted(the_plan.fields.items())))
            for key, (old, new) in the_plan.changes.items():
                print(f"  change {key}: {old!r} -> {new!r}")
        if not api_key and not args.dry_run:
            print("error: set RUNPOD_API_KEY (or --api-key) to deploy", flush=True)
            return 2
        return 0
    saved = apply(config, the_plan, api_key)
    print(as_json(saved) if args.json else f"{the_plan.action}d endpoint {saved.get('id')} ({config.name})")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("deploy", help="create or update the endpoint from runpod.toml's [endpoint] section")
    p.add_argument("--config", default="runpod.toml")
    p.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    p.add_argument("--api-key", help="RunPod API key (default: env RUNPOD_API_KEY)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_deploy)
