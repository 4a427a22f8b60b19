"""The price table: GPU hourly rates (on-demand and spot) and API prices per million tokens.

`load_prices(path)` reads the packaged `core/data/prices.json`, or the user's
file when a path is given (the CLI passes `--prices` or the `PRICE_TABLE`
variable; nothing here reads the environment). Pure pydantic + stdlib: the
worker, the builder and the client import it (GPU_TYPE -> hourly rate).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.errors import PriceTableError

PACKAGED_PRICES = Path(__file__).resolve().parent / "data" / "prices.json"

Tier = Literal["on_demand", "spot"]


class GpuPrice(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(description="RunPod GPU id, as the endpoint's gpuIds take it.")
    short_name: str
    aliases: tuple[str, ...] = ()
    vram_gb: float = Field(gt=0)
    on_demand_hourly: float = Field(gt=0, description="USD per worker-hour, serverless on-demand (flex).")
    spot_hourly: float | None = Field(None, gt=0, description="USD per worker-hour on spot; None: estimated.")
    spot_estimated: bool = False
    as_of: date
    source: str

    def hourly(self, tier: Tier = "on_demand") -> float:
        if tier == "spot":
            assert self.spot_hourly is not None  # filled by PriceTable
            return self.spot_hourly
        return self.on_demand_hourly

    def names(self) -> tuple[str, ...]:
        return (self.id, self.short_name, *self.aliases)


class ApiPrice(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    input_per_million: float = Field(ge=0)
    output_per_million: float = Field(ge=0)
    as_of: date
    source: str

    def cost(self, input_tokens: float, output_tokens: float) -> float:
        return (input_tokens * self.input_per_million + output_tokens * self.output_per_million) / 1_000_000


class PriceTable(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    currency: str = "USD"
    notes: tuple[str, ...] = ()
    default_spot_discount: float = Field(0.6, ge=0, lt=1)
    default_spot_discount_source: str = ""
    gpus: tuple[GpuPrice, ...] = Field(min_length=1)
    apis: tuple[ApiPrice, ...] = ()

    @model_validator(mode="after")
    def _fill_spot_and_check_names(self) -> PriceTable:
        seen: dict[str, str] = {}
        filled = []
        for gpu in self.gpus:
            for name in gpu.names():
                key = name.casefold()
                if key in seen and seen[key] != gpu.id:
                    raise ValueError(f"GPU name {name!r} is used by both {seen[key]!r} and {gpu.id!r}")
                seen[key] = gpu.id
            if gpu.spot_hourly is None:
                estimate = round(gpu.on_demand_hourly * (1 - self.default_spot_discount), 4)
                filled.append(gpu.model_copy(update={"spot_hourly": estimate, "spot_estimated": True}))
            else:
                filled.append(gpu)
        object.__setattr__(self, "gpus", tuple(filled))
        return self

    def gpu(self, name: str) -> GpuPrice:
        """The GPU whose RunPod id, short name or alias is `name` (case-insensitive)."""
        key = name.strip().casefold()
        for gpu in self.gpus:
            if key in (n.casefold() for n in gpu.names()):
                return gpu
        known = ", ".join(f"{g.id!r} ({g.short_name})" for g in self.gpus)
        raise PriceTableError(f"unknown GPU {name!r}; the price table knows: {known}")

    def api(self, name: str) -> ApiPrice:
        key = name.strip().casefold()
        for api in self.apis:
            if api.name.casefold() == key:
                return api
        known = ", ".join(a.name for a in self.apis)
        raise PriceTableError(f"unknown API {name!r}; the price table knows: {known}")

    def hourly_rate(self, gpu: str, tier: Tier = "on_demand") -> float:
        return self.gpu(gpu).hourly(tier)

    def by_vram(self) -> list[GpuPrice]:
        """GPUs from the smallest memory up; cheaper first among equals."""
        return sorted(self.gpus, key=lambda g: (g.vram_gb, g.on_demand_hourly))


def parse_prices(text: str, *, origin: str = "<text>") -> PriceTable:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PriceTableError(f"price table {origin}: not valid JSON: {exc}") from exc
    try:
        return PriceTable.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors())
        raise PriceTableError(f"price table {origin}: {problems}") from exc


def load_prices(path: Path | None = None) -> PriceTable:
    """The user's price file when `path` is given, else the packaged one."""
    source = PACKAGED_PRICES if path is None else Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise PriceTableError(f"price table {source}: cannot read: {exc.strerror or exc}") from exc
    return parse_prices(text, origin=str(source))
