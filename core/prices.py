"""The price table: RunPod serverless GPU pools and their per-second rates, the two tiers, API prices.

RunPod serverless bills a worker per second, from its start until it stops. It
sells two kinds of worker, each with its rate per GPU pool: flex workers (scaled
from zero, billed while they run) and active workers (always on, billed every
second). There is no serverless spot tier. The client plans with two tiers,
named for what they are (the README calls them "spot" and "on-demand"):

    cheap tier     a flex-only endpoint on the cheapest adequate pool: billed only
                   while it runs, but often cold or throttled
    reliable tier  an endpoint with active workers and broader pools: warm, and
                   billed for its active workers around the clock

Each pool (`GpuPrice`) has named rates (`Rate`: USD per second, dated, with its
source); `TierRule` says which rate each tier pays, and `SizeClass` which pools
each tier uses for a model of that size. A tier is priced at the dearest of its
pools: RunPod may place its workers on any of them. The worker's own seconds
are billed at `worker_rate` (RunPod: flex): that is `hourly_rate(gpu)`.

`load_prices(path)` reads the packaged RunPod table, a named packaged table
(`seed004`: seed 004's figures, to reproduce its examples) or the user's file.
Pure pydantic + stdlib: the worker, the builder and the client import it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.errors import PriceTableError

DATA = Path(__file__).resolve().parent / "data"
PACKAGED_PRICES = DATA / "prices.json"
NAMED_TABLES = {"runpod": PACKAGED_PRICES, "seed004": DATA / "prices-seed004.json"}
TierName = Literal["cheap", "reliable"]
TIER_NAMES: tuple[TierName, TierName] = ("cheap", "reliable")
# the mission's words for the tiers (README): spot = the cheap tier, on-demand = the reliable one
TIER_WORDS: dict[str, TierName] = {"cheap": "cheap", "spot": "cheap", "reliable": "reliable", "on_demand": "reliable"}


class Rate(BaseModel):
    """One rate in the unit its source gives: USD per second (RunPod) or per hour (seed 004); dated and sourced."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    usd_per_second: float | None = Field(None, gt=0)
    usd_per_hour: float | None = Field(None, gt=0)
    as_of: date = Field(description="The day the source gave this figure.")
    source: str = Field(min_length=1)
    note: str = ""

    @model_validator(mode="after")
    def _one_unit(self) -> Rate:
        if (self.usd_per_second is None) == (self.usd_per_hour is None):
            raise ValueError("give exactly one of usd_per_second and usd_per_hour")
        return self

    @property
    def hourly(self) -> float:
        if self.usd_per_hour is not None:
            return self.usd_per_hour
        return round((self.usd_per_second or 0.0) * 3600, 9)

    @property
    def per_second(self) -> float:
        return self.usd_per_second if self.usd_per_second is not None else (self.usd_per_hour or 0.0) / 3600


class GpuPrice(BaseModel):
    """A RunPod GPU pool (in seed 004's table, one GPU) and its rates."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(description="RunPod pool id, as an endpoint's gpuIds take it (seed004: the seed's GPU name).")
    label: str = ""
    gpus: tuple[str, ...] = Field((), description="RunPod GPU ids (as nvidia-smi names them) in the pool.")
    aliases: tuple[str, ...] = ()
    vram_gb: float = Field(gt=0)
    rates: dict[str, Rate] = Field(min_length=1)
    worker_rate: str = Field("", description="Filled from the table: the rate the worker's own seconds pay.")

    def names(self) -> tuple[str, ...]:
        return (self.id, *self.gpus, *self.aliases)

    def rate(self, name: str | None = None) -> Rate:
        """The named rate; None: the worker's (RunPod: flex)."""
        key = name or self.worker_rate
        if key not in self.rates:
            raise PriceTableError(f"{self.id}: no {key!r} rate in the price table (it has {', '.join(self.rates)})")
        return self.rates[key]

    def hourly(self, rate: str | None = None) -> float:
        """USD per worker-hour at the named rate; None: the worker's rate (RunPod: flex)."""
        return self.rate(rate).hourly


class TierRule(BaseModel):
    """How a tier is billed: `rate` for the seconds its workers run; `active_workers` always on at `active_rate`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    label: str
    rate: str
    active_workers: int = Field(0, ge=0)
    active_rate: str | None = None

    @model_validator(mode="after")
    def _active_needs_a_rate(self) -> TierRule:
        if self.active_workers and not self.active_rate:
            raise ValueError("active_workers > 0 needs an active_rate")
        return self


class SizeClass(BaseModel):
    """The pools each tier uses for a model of this size (first pool first, as an endpoint's gpuIds)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    vram_gb: float = Field(gt=0)
    cheap: tuple[str, ...] = Field(min_length=1)
    reliable: tuple[str, ...] = Field(min_length=1)


class ApiPrice(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    input_per_million: float = Field(ge=0)
    output_per_million: float = Field(ge=0)
    as_of: date
    source: str

    def cost(self, input_tokens: float, output_tokens: float) -> float:
        return (input_tokens * self.input_per_million + output_tokens * self.output_per_million) / 1_000_000


@dataclass(frozen=True)
class TierPrice:
    """One tier, priced per worker-hour: while its workers run (`hourly`), and for each always-on worker."""

    tier: TierName
    label: str
    pools: tuple[str, ...]
    priced_as: str  # the pool whose rates price the tier (the dearest of `pools`)
    hourly: float | None  # None: the table has no such rate for this pool (unpriced)
    active_workers: int
    active_hourly: float | None


@dataclass(frozen=True)
class TierPair:
    name: str  # the size class, or the pool both tiers use
    vram_gb: float
    cheap: TierPrice
    reliable: TierPrice


class PriceTable(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[2] = 2
    name: str = "custom"
    currency: str = "USD"
    notes: tuple[str, ...] = ()
    worker_rate: str = "flex"
    cheap_tier: TierRule
    reliable_tier: TierRule
    gpus: tuple[GpuPrice, ...] = Field(min_length=1)
    size_classes: tuple[SizeClass, ...] = ()
    apis: tuple[ApiPrice, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> PriceTable:
        seen: dict[str, str] = {}
        for gpu in self.gpus:
            for name in gpu.names():
                key = name.casefold()
                if key in seen and seen[key] != gpu.id:
                    raise ValueError(f"GPU name {name!r} is used by both {seen[key]!r} and {gpu.id!r}")
                seen[key] = gpu.id
            if self.worker_rate not in gpu.rates:
                raise ValueError(f"{gpu.id}: no {self.worker_rate!r} rate (the worker_rate)")
        object.__setattr__(
            self, "gpus", tuple(g.model_copy(update={"worker_rate": self.worker_rate}) for g in self.gpus)
        )
        ids = {g.id for g in self.gpus}
        for size in self.size_classes:
            unknown = [p for p in (*size.cheap, *size.reliable) if p not in ids]
            if unknown:
                raise ValueError(f"size class {size.name!r}: unknown pools {', '.join(unknown)}")
        return self

    def gpu(self, name: str) -> GpuPrice:
        """The pool whose id, GPU name or alias is `name` (case-insensitive)."""
        key = name.strip().casefold()
        for gpu in self.gpus:
            if key in (n.casefold() for n in gpu.names()):
                return gpu
        known = ", ".join(f"{g.id!r} ({', '.join(g.gpus) or g.label})" for g in self.gpus)
        raise PriceTableError(f"unknown GPU {name!r}; the price table knows: {known}")

    def api(self, name: str) -> ApiPrice:
        key = name.strip().casefold()
        for api in self.apis:
            if api.name.casefold() == key:
                return api
        known = ", ".join(a.name for a in self.apis)
        raise PriceTableError(f"unknown API {name!r}; the price table knows: {known}")

    def hourly_rate(self, gpu: str) -> float:
        """USD per hour of one GPU of this pool at the worker's rate (RunPod: flex, as the worker's seconds are)."""
        return self.gpu(gpu).hourly()

    def by_vram(self) -> list[GpuPrice]:
        """Pools from the smallest memory up; cheaper first among equals."""
        return sorted(self.gpus, key=lambda g: (g.vram_gb, g.hourly()))

    # ---------------------------------------------------------------- tiers
    def rule(self, tier: TierName) -> TierRule:
        return self.cheap_tier if tier == "cheap" else self.reliable_tier

    def tier(self, tier: TierName, pools: tuple[str, ...], *, active_workers: int | None = None) -> TierPrice:
        """A tier on these pools, priced at the dearest of them; `active_workers` overrides the table's."""
        rule = self.rule(tier)
        entries = [self.gpu(p) for p in pools]
        priced = max(entries, key=lambda g: (_hourly(g, rule.rate) or 0.0, g.hourly()))
        active = rule.active_workers if active_workers is None else active_workers
        if active < 0:
            raise PriceTableError(f"active workers must be >= 0, got {active}")
        if active and not rule.active_rate:
            raise PriceTableError(f"the {tier} tier of price table {self.name!r} has no active rate")
        return TierPrice(
            tier,
            rule.label,
            tuple(g.id for g in entries),
            priced.id,
            _hourly(priced, rule.rate),
            active,
            _hourly(priced, rule.active_rate) if active and rule.active_rate else None,
        )

    def pair(self, name: str, *, active_workers: int | None = None) -> TierPair:
        """Both tiers for a size (`24GB`: its size class, else the smallest class that holds it; a table without
        classes: its cheapest pool that holds it), or both tiers on one pool (by a pool or GPU name)."""
        key = name.replace(" ", "").casefold()
        size_gb = float(key[:-2]) if key.endswith("gb") and key[:-2].replace(".", "", 1).isdigit() else None
        sizes = [s for s in self.size_classes if s.name.replace(" ", "").casefold() == key]
        if not sizes and size_gb is not None:
            sizes = sorted((s for s in self.size_classes if s.vram_gb >= size_gb), key=lambda s: s.vram_gb)[:1]
        if sizes:
            size = sizes[0]
            return TierPair(
                size.name,
                size.vram_gb,
                self.tier("cheap", size.cheap),
                self.tier("reliable", size.reliable, active_workers=active_workers),
            )
        if size_gb is not None and not self.size_classes:
            holding = [g for g in self.gpus if g.vram_gb >= size_gb]
            if holding:
                name = min(holding, key=lambda g: (g.hourly(), g.vram_gb)).id
        gpu = self.gpu(name)
        return TierPair(
            gpu.id,
            gpu.vram_gb,
            self.tier("cheap", (gpu.id,)),
            self.tier("reliable", (gpu.id,), active_workers=active_workers),
        )

    def pairs(self, names: list[str] | None = None, *, active_workers: int | None = None) -> list[TierPair]:
        """The named pairs; none named: every size class (a table without them: every pool)."""
        if not names:
            names = [s.name for s in self.size_classes] or [g.id for g in self.by_vram()]
        return [self.pair(n, active_workers=active_workers) for n in names]


def _hourly(gpu: GpuPrice, rate: str | None) -> float | None:
    return gpu.rates[rate].hourly if rate in gpu.rates else None


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


def load_prices(path: Path | str | None = None) -> PriceTable:
    """A packaged table by name (runpod, the default; seed004), else the user's file at `path`."""
    source = PACKAGED_PRICES if path is None else NAMED_TABLES.get(str(path).strip().casefold(), Path(path))
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        names = ", ".join(NAMED_TABLES)
        raise PriceTableError(
            f"price table {source}: cannot read: {exc.strerror or exc} (or name one: {names})"
        ) from exc
    return parse_prices(text, origin=str(source))
