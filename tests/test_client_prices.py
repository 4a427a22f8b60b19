"""The price table: packaged figures, lookups, user override, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import PriceTableError
from core.prices import PACKAGED_PRICES, load_prices


def test_packaged_table_has_seed_004_figures() -> None:
    table = load_prices()
    rtx4090 = table.gpu("NVIDIA GeForce RTX 4090")
    assert (rtx4090.on_demand_hourly, rtx4090.spot_hourly, rtx4090.vram_gb) == (0.44, 0.18, 24)
    assert rtx4090.spot_estimated is False
    assert table.gpu("H100_80GB").hourly("spot") == 1.88
    assert table.api("gpt-4").input_per_million == 30.0
    for gpu in table.gpus:
        assert gpu.as_of.year >= 2024 and gpu.source


def test_lookup_by_short_name_alias_and_case() -> None:
    table = load_prices()
    assert table.gpu("rtx_a6000").id == "NVIDIA RTX A6000"
    assert table.gpu("a100").id == "NVIDIA A100 80GB PCIe"
    assert table.hourly_rate("RTX_4090") == 0.44


def test_missing_spot_is_estimated_from_default_discount() -> None:
    table = load_prices()
    a6000 = table.gpu("RTX_A6000")
    # 0.79 * (1 - 0.6) = 0.316
    assert a6000.spot_estimated is True
    assert a6000.spot_hourly == pytest.approx(0.316)


def test_unknown_gpu_lists_known_ids() -> None:
    with pytest.raises(PriceTableError) as info:
        load_prices().gpu("Tesla T4")
    assert "'Tesla T4'" in str(info.value)
    assert "NVIDIA GeForce RTX 4090" in str(info.value)


def test_user_file_overrides_packaged(tmp_path: Path) -> None:
    data = json.loads(PACKAGED_PRICES.read_text())
    data["gpus"] = [dict(data["gpus"][1], on_demand_hourly=0.5, spot_hourly=None)]
    data["default_spot_discount"] = 0.5
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(data))
    table = load_prices(path)
    assert [g.short_name for g in table.gpus] == ["RTX_4090"]
    assert table.gpu("RTX_4090").hourly("spot") == 0.25


def test_invalid_file_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps(
            {
                "gpus": [
                    {
                        "id": "X",
                        "short_name": "X",
                        "vram_gb": 8,
                        "on_demand_hourly": -1,
                        "as_of": "2026-01-01",
                        "source": "me",
                    }
                ]
            }
        )
    )
    with pytest.raises(PriceTableError, match=r"gpus\.0\.on_demand_hourly"):
        load_prices(path)
    with pytest.raises(PriceTableError, match="cannot read"):
        load_prices(tmp_path / "absent.json")


def test_endpoint_api_without_a_key_fails_at_once() -> None:
    from client.endpoint_api import EndpointAPI
    from client.errors import ClientError

    with pytest.raises(ClientError, match="no RunPod API key"):
        EndpointAPI("http://127.0.0.1:9/v2", "")
