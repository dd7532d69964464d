"""Validation of an HA pair (engine/model/ha_pair.py): both routers must agree, errors name the
variable, both routers and both values; the model NATs to the virtual addresses."""
from __future__ import annotations

import copy

import pytest
from ansible_collections.netops.multihome.plugins.module_utils.engine.errors import ValidationError
from ansible_collections.netops.multihome.plugins.module_utils.engine.model.ha_pair import (
    pair_settings,
    with_ha,
)
from ansible_collections.netops.multihome.plugins.module_utils.engine.model.role import build_model

TARGETS = ["203.0.113.10"]


def role_vars(n: int) -> dict:
    return {
        "multihome_uplinks": [
            {"name": "isp1", "interface": "wan1", "address": f"198.51.100.{2 + n}/29",
             "gateway": "198.51.100.1", "targets": TARGETS},
            {"name": "isp2", "interface": "wan2", "address": f"198.51.100.{10 + n}/29",
             "gateway": "198.51.100.9", "targets": TARGETS},
        ],
        "multihome_lans": [{"name": "lan1", "interface": "lan1", "prefixes": ["192.168.1.0/24"]}],
    }


def ha_vars(n: int) -> dict:
    return {
        "peer": "r2" if n == 1 else "r1", "priority": 250 - 100 * (n - 1),
        "sync_interface": "sync0", "sync_address": f"192.0.2.{248 + n}/30",
        "lans": [{"name": "lan1", "virtual_address": "192.168.1.1/24", "vrid": 11}],
        "uplinks": [{"name": "isp1", "virtual_address": "198.51.100.2/29", "vrid": 21},
                    {"name": "isp2", "virtual_address": "198.51.100.10/29", "vrid": 22}],
    }


def check(vars1=None, vars2=None, ha1=None, ha2=None):
    m1, m2 = build_model(vars1 or role_vars(1)), build_model(vars2 or role_vars(2))
    return pair_settings(m1, ha1 or ha_vars(1), "r1", m2, ha2 if ha2 is not None else ha_vars(2))


def test_good_pair_gives_both_sync_addresses_and_ignores_both_routers_own_addresses() -> None:
    settings = check()
    assert settings["peer_sync_address"] == "192.0.2.250"
    own = {"198.51.100.3", "198.51.100.4", "198.51.100.11", "198.51.100.12"}
    assert own <= set(settings["ignore_addresses"])


def test_pair_model_nats_to_the_virtual_addresses_and_keeps_real_ones_for_lsm() -> None:
    model = with_ha(build_model(role_vars(1)), check())
    assert [u["snat_address"] for u in model["balance"]["uplinks"]] == ["198.51.100.2", "198.51.100.10"]
    assert model["failover"]["uplinks"]["isp1"]["source"] == "198.51.100.3"
    assert model["sysctl"]["net/netfilter/nf_conntrack_tcp_loose"] == "0"


def test_different_marks_name_the_variable_both_routers_and_values() -> None:
    vars2 = role_vars(2)
    vars2["multihome_uplinks"][0]["mark"] = 0x7700
    with pytest.raises(ValidationError) as err:
        check(vars2=vars2)
    assert err.value.option == "multihome_uplinks (isp1).mark"
    assert err.value.value == {"r1": 0xA500, "r2": 0x7700}


def test_different_virtual_address_names_both_routers() -> None:
    ha2 = ha_vars(2)
    ha2["uplinks"][1]["virtual_address"] = "198.51.100.14/29"
    with pytest.raises(ValidationError, match=r"multihome_ha.uplinks \(isp2\).virtual_address.*'r1'.*'r2'"):
        check(ha2=ha2)


def test_peer_without_ha_settings_fails() -> None:
    with pytest.raises(ValidationError, match="r2 has none"):
        check(ha2={})


def test_peers_that_do_not_name_each_other_fail() -> None:
    ha2 = ha_vars(2)
    ha2["peer"] = "r3"
    with pytest.raises(ValidationError, match=r"multihome_ha.peer"):
        check(ha2=ha2)


OWN = "other than this router's own"


@pytest.mark.parametrize("kind,index,value,option,allowed", [
    ("uplinks", 0, "198.51.100.3/29", "multihome_ha.uplinks[0].virtual_address", OWN),
    ("uplinks", 0, "198.51.100.4/29", "multihome_ha.uplinks[0].virtual_address (on r2)", OWN),
    ("uplinks", 1, "198.51.100.2/29", "multihome_ha.uplinks[1].virtual_address", "inside 198.51.100.8/29"),
    ("lans", 0, "192.168.2.1/24", "multihome_ha.lans[0].virtual_address", "inside 192.168.1.0/24"),
])
def test_overlapping_or_foreign_virtual_addresses_fail(kind: str, index: int, value: str, option: str,
                                                       allowed: str) -> None:
    ha1, ha2 = copy.deepcopy(ha_vars(1)), copy.deepcopy(ha_vars(2))
    ha1[kind][index]["virtual_address"] = ha2[kind][index]["virtual_address"] = value
    with pytest.raises(ValidationError, match=allowed) as err:
        check(ha1=ha1, ha2=ha2)
    assert err.value.option == option


def test_every_lan_and_uplink_needs_an_instance() -> None:
    ha1 = ha_vars(1)
    ha1["uplinks"] = ha1["uplinks"][:1]
    with pytest.raises(ValidationError, match="missing: isp2"):
        check(ha1=ha1)


def test_password_only_with_vrrp_version_2_and_never_shown() -> None:
    ha1 = dict(ha_vars(1), auth_pass="secret")
    with pytest.raises(ValidationError, match="only with vrrp_version 2") as err:
        check(ha1=ha1)
    assert "secret" not in str(err.value)
    v2 = dict(ha1, vrrp_version=2, advert_interval=1)
    peer_v2 = dict(ha_vars(2), vrrp_version=2, advert_interval=1, auth_pass="secret")
    assert check(ha1=v2, ha2=peer_v2)["auth_pass"] == "secret"


def test_sub_second_adverts_need_vrrp_version_3() -> None:
    with pytest.raises(ValidationError, match="whole seconds"):
        check(ha1=dict(ha_vars(1), vrrp_version=2, advert_interval=0.3))


def test_masquerade_uplink_is_refused_in_a_pair() -> None:
    vars1 = role_vars(1)
    vars1["multihome_uplinks"][0]["nat"] = "masquerade"
    with pytest.raises(ValidationError, match="snat: an HA pair NATs"):
        check(vars1=vars1)
