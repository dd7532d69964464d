"""Cross-field address mistakes refused before any router changes, naming both entries."""
from __future__ import annotations

import pytest
from ansible_collections.netops.multihome.plugins.module_utils.engine.errors import ValidationError
from ansible_collections.netops.multihome.plugins.module_utils.engine.model.role import build_model

from .test_model import GOOD, variant

LAN2 = {"name": "lan2", "interface": "lan2", "prefixes": ["192.168.2.0/24"]}


def refusal(role_vars) -> str:
    with pytest.raises(ValidationError) as err:
        build_model(role_vars)
    return str(err.value)


def test_lan_prefix_overlapping_an_uplink_prefix_names_both() -> None:
    text = refusal(variant(multihome_lans__0__prefixes=["198.51.100.0/24"]))
    assert "multihome_lans[0].prefixes[0]" in text and "198.51.100.0/24" in text
    assert "multihome_uplinks[0].address (198.51.100.0/30)" in text


def test_lan_inside_an_uplink_ipv6_prefix_is_refused() -> None:
    text = refusal(variant(multihome_lans__0__prefixes=["192.168.1.0/24", "2001:db8:f1:1::/64"]))
    assert "multihome_lans[0].prefixes[1]" in text and "multihome_uplinks[0].address6" in text


def test_gateway_that_is_a_lan_address_is_refused() -> None:
    text = refusal(variant(multihome_lans__0__prefixes=["198.51.100.4/30"]))
    assert "multihome_lans[0].prefixes[0]" in text and "multihome_uplinks[1].address" in text


def test_monitor_target_inside_a_lan_is_refused() -> None:
    text = refusal(variant(multihome_uplinks__1__targets=["192.168.1.20"]))
    assert "multihome_uplinks[1].targets[0]" in text and "multihome_lans[0].prefixes[0]" in text


def test_same_prefix_on_two_lans_is_refused() -> None:
    two = variant(multihome_lans=[GOOD["multihome_lans"][0], {**LAN2, "prefixes": ["192.168.1.0/24"]}])
    text = refusal(two)
    assert "multihome_lans[1].prefixes[0]" in text and "multihome_lans[0].prefixes[0]" in text


def test_nptv6_outside_prefix_that_is_a_lan_prefix_is_refused() -> None:
    prefixes = ["192.168.1.0/24", "fd00:1::/64", "2001:db8:7::/64"]
    lan = {"name": "lan1", "interface": "lan1", "prefixes": prefixes}
    text = refusal(variant(multihome_lans=[lan], multihome_uplinks__0__nptv6=[
        {"inside": "fd00:1::/64", "outside": "2001:db8:7::/64"}]))
    assert "multihome_lans[0].prefixes[2]" in text and "multihome_uplinks[0].nptv6[0].outside" in text


def test_distinct_prefixes_are_accepted() -> None:
    assert build_model(variant(multihome_lans=[GOOD["multihome_lans"][0], LAN2]))["balance"]["lans"]
