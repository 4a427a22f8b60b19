"""The price table: RunPod's pools and rates, the two tiers, seed 004's named table, lookups, user override, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import PriceTableError
from core.prices import NAMED_TABLES, PACKAGED_PRICES, PriceTable, load_prices, parse_prices

RUNPOD_POOLS = {
    "AMPERE_16", "AMPERE_24", "ADA_24", "AMPERE_48", "ADA_48_PRO", "AMPERE_80", "ADA_80_PRO", "HOPPER_141",
}  # fmt: skip


def test_packaged_table_has_runpods_flex_and_active_rates_per_pool_each_dated_and_sourced() -> None:
    table = load_prices()
    assert table.name == "runpod" and {g.id for g in table.gpus} >= RUNPOD_POOLS
    ada24 = table.gpu("ADA_24")
    assert ada24.gpus == ("NVIDIA GeForce RTX 4090",) and ada24.vram_gb == 24
    # RunPod's docs: 4090 PRO $0.00031 per second, flex; x 3600 = $1.116 an hour
    assert ada24.rate("flex").usd_per_second == 0.00031 and ada24.hourly("flex") == 1.116
    # no separate list rate for active workers since 2026-05-13: entered as the flex rate, the old one in its note
    assert ada24.hourly("active") == 1.116 and "0.00021" in ada24.rate("active").note
    assert table.gpu("AMPERE_24").rate("flex").usd_per_second == 0.00019
    assert table.gpu("H200").hourly("flex") == 5.58  # 0.00155 x 3600
    for gpu in table.gpus:
        for rate in gpu.rates.values():
            assert rate.as_of.year == 2026 and rate.source.startswith("https://")
        assert set(gpu.rates) == {"flex", "active"}
    assert table.api("gpt-4").input_per_million == 30.0


def test_the_worker_is_priced_at_the_flex_rate_by_any_name_of_its_gpu() -> None:
    table = load_prices()
    # nvidia-smi's name, the old short names and aliases all find the pool; the worker's seconds are flex seconds
    assert table.hourly_rate("NVIDIA GeForce RTX 4090") == table.hourly_rate("RTX_4090") == 1.116
    assert table.gpu("NVIDIA L4").id == table.gpu("rtx_a5000").id == "AMPERE_24"
    assert table.gpu("rtx_a6000").id == "AMPERE_48" and table.gpu("a100").id == "AMPERE_80"
    assert table.gpu("NVIDIA A100-SXM4-80GB").id == "AMPERE_80"
    assert table.hourly_rate("NVIDIA RTX A4000") == 0.576  # 0.00016 x 3600


def _keys(data: object) -> list[str]:
    if isinstance(data, dict):
        return [k for key, value in data.items() for k in (key, *_keys(value))]
    return [k for item in data for k in _keys(item)] if isinstance(data, list) else []


def test_no_table_carries_a_discount_and_none_is_applied() -> None:
    for path in NAMED_TABLES.values():
        assert not [key for key in _keys(json.loads(path.read_text())) if "discount" in key]
    assert not [name for name in PriceTable.model_fields if "discount" in name]
    # a discount field is refused by name, never applied
    data = json.loads(PACKAGED_PRICES.read_text())
    with pytest.raises(PriceTableError, match="discount"):
        parse_prices(json.dumps({**data, "discount": 0.6}))
    assert all("spot" not in gpu.rates for gpu in load_prices().gpus)


def test_tiers_per_size_class_and_on_one_pool() -> None:
    table = load_prices()
    pair = table.pair("24GB")
    # cheap: flex only on the cheapest 24 GB pool; reliable: 1 active worker, broader pools, priced at the dearest
    assert (pair.cheap.pools, pair.cheap.hourly, pair.cheap.active_workers) == (("AMPERE_24",), 0.684, 0)
    assert (pair.reliable.pools, pair.reliable.priced_as) == (("ADA_24", "AMPERE_24"), "ADA_24")
    assert (pair.reliable.hourly, pair.reliable.active_workers, pair.reliable.active_hourly) == (1.116, 1, 1.116)
    # a size between classes takes the next class up; a GPU name puts both tiers on its pool
    assert table.pair("30GB").name == "48GB" and table.pair("24 gb").name == "24GB"
    on_4090 = table.pair("RTX_4090", active_workers=2)
    assert (on_4090.name, on_4090.cheap.pools, on_4090.reliable.pools) == ("ADA_24", ("ADA_24",), ("ADA_24",))
    assert on_4090.reliable.active_workers == 2
    assert [p.name for p in table.pairs()] == [s.name for s in table.size_classes]


def test_seed004_table_reproduces_the_seeds_figures_labelled_as_the_seeds() -> None:
    seed = load_prices("seed004")
    rtx4090 = seed.gpu("NVIDIA GeForce RTX 4090")
    assert rtx4090.id == "RTX_4090" and (rtx4090.hourly("on_demand"), rtx4090.hourly("spot")) == (0.44, 0.18)
    assert all("seed 004" in r.source for g in seed.gpus for r in g.rates.values())
    assert seed.hourly_rate("RTX_4090") == 0.44  # the seed priced the worker at on-demand
    assert (seed.gpu("A100_80GB").hourly("spot"), seed.gpu("H100_80GB").hourly("spot")) == (0.76, 1.88)
    # the seed gave no spot figure for the A6000: its cheap tier is unpriced, not estimated
    a6000 = seed.pair("RTX_A6000")
    assert a6000.cheap.hourly is None and a6000.reliable.hourly == 0.79
    assert seed.pair("24GB").name == "RTX_4090"  # no size classes: the cheapest GPU that holds 24 GB
    assert load_prices(Path("seed004")).name == "seed004"


def test_unknown_gpu_lists_known_ids() -> None:
    with pytest.raises(PriceTableError) as info:
        load_prices().gpu("Tesla T4")
    assert "'Tesla T4'" in str(info.value)
    assert "'ADA_24' (NVIDIA GeForce RTX 4090)" in str(info.value)


def test_user_file_overrides_packaged(tmp_path: Path) -> None:
    data = json.loads(PACKAGED_PRICES.read_text())
    ada24 = next(g for g in data["gpus"] if g["id"] == "ADA_24")
    ada24["rates"]["flex"]["usd_per_second"] = 0.0005
    ada24["rates"]["active"]["usd_per_second"] = 0.0004  # a negotiated active rate
    data["gpus"], data["size_classes"] = [ada24], []
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(data))
    table = load_prices(path)
    assert [g.id for g in table.gpus] == ["ADA_24"]
    assert table.hourly_rate("RTX_4090") == 1.8  # 0.0005 x 3600
    assert table.pair("RTX_4090").reliable.active_hourly == 1.44  # 0.0004 x 3600


def test_invalid_file_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    rule = {"label": "x", "rate": "flex"}
    gpu = {"id": "X", "vram_gb": 8, "rates": {"flex": {"usd_per_second": -1, "as_of": "2026-01-01", "source": "me"}}}
    path.write_text(json.dumps({"cheap_tier": rule, "reliable_tier": rule, "gpus": [gpu]}))
    with pytest.raises(PriceTableError, match=r"gpus\.0\.rates\.flex\.usd_per_second"):
        load_prices(path)
    gpu["rates"] = {"flex": {"usd_per_second": 1, "usd_per_hour": 3600, "as_of": "2026-01-01", "source": "me"}}
    path.write_text(json.dumps({"cheap_tier": rule, "reliable_tier": rule, "gpus": [gpu]}))
    with pytest.raises(PriceTableError, match="exactly one of usd_per_second and usd_per_hour"):
        load_prices(path)
    gpu["rates"] = {"active": {"usd_per_second": 1, "as_of": "2026-01-01", "source": "me"}}
    path.write_text(json.dumps({"cheap_tier": rule, "reliable_tier": rule, "gpus": [gpu]}))
    with pytest.raises(PriceTableError, match="no 'flex' rate"):
        load_prices(path)
    with pytest.raises(PriceTableError, match=r"cannot read.*seed004"):
        load_prices(tmp_path / "absent.json")


def test_endpoint_api_without_a_key_fails_at_once() -> None:
    from client.endpoint_api import EndpointAPI
    from client.errors import ClientError

    with pytest.raises(ClientError, match="no RunPod API key"):
        EndpointAPI("http://127.0.0.1:9/v2", "")
