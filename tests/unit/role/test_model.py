"""The role's variables -> router model: derivation and every cross-field error."""
from __future__ import annotations

import copy

import pytest
from ansible_collections.netops.multihome.plugins.module_utils.engine.errors import ValidationError
from ansible_collections.netops.multihome.plugins.module_utils.engine.model.role import (
    build_model,
    lsm_connections,
)

GOOD = {
    "multihome_uplinks": [
        {"name": "isp1", "interface": "wan1", "address": "198.51.100.2/30", "gateway": "198.51.100.1",
         "address6": "2001:db8:f1:1::2/64", "gateway6": "2001:db8:f1:1::1",
         "targets": ["203.0.113.10", "203.0.113.11"]},
        {"name": "isp2", "interface": "wan2", "address": "198.51.100.6/30", "gateway": "198.51.100.5",
         "weight": 2, "targets": ["203.0.113.10"]},
    ],
    "multihome_lans": [{"name": "lan1", "interface": "lan1", "prefixes": ["192.168.1.0/24"]}],
}


def variant(**changes):
    out = copy.deepcopy(GOOD)
    for path, value in changes.items():
        keys = path.split("__")
        node = out
        for key in keys[:-1]:
            node = node[int(key)] if key.isdigit() else node[key]
        last = keys[-1]
        if value is KeyError:
            del node[last]
        else:
            node[int(last) if last.isdigit() else last] = value
    return out


def test_model_shape() -> None:
    model = build_model(GOOD)
    assert set(model) >= {"balance", "routing", "sysctl", "failover", "local_default"}
    assert [t["name"] for t in model["routing"]] == ["mh_isp1", "mh_isp2"]
    assert model["sysctl"]["net/ipv4/conf/wan1/rp_filter"] == "2"
    assert model["sysctl"]["net/ipv4/conf/lan1/rp_filter"] == "1"  # spoofed LAN sources dropped
    assert model["sysctl"]["net/ipv4/conf/all/rp_filter"] == "0"   # max(all, if): each if decides
    assert model["sysctl"]["net/ipv6/conf/all/forwarding"] == "1"
    up1 = model["balance"]["uplinks"][0]
    assert up1["nat"] == "snat" and up1["snat_address"] == "198.51.100.2"
    rules = model["routing"][0]["rules"]
    assert {"from": "198.51.100.2/32"}.items() <= next(r for r in rules if "from" in r).items()
    assert any(r.get("oif") == "wan1" for r in rules)
    assert model["local_default"] == {"uplink": "isp1", "interface": "wan1", "gateway": "198.51.100.1",
                                      "gateway6": "2001:db8:f1:1::1"}


def test_reordering_uplinks_gives_the_same_tables_marks_and_rules() -> None:
    swapped = copy.deepcopy(GOOD)
    swapped["multihome_uplinks"].reverse()
    a, b = build_model(GOOD), build_model(swapped)
    assert sorted(a["routing"], key=lambda t: t["name"]) == sorted(b["routing"], key=lambda t: t["name"])
    assert a["failover"] == b["failover"]


def test_rule_priorities_never_shared_between_tables() -> None:
    model = build_model(GOOD)
    prios = [{(r.get("family"), r["priority"]) for r in t["rules"]} for t in model["routing"]]
    assert not prios[0] & prios[1]


def test_lsm_connections_one_per_target_each_reporting_to_the_hook() -> None:
    conns = lsm_connections(build_model(GOOD), "/hook")
    assert [c["name"] for c in conns] == ["isp1.1", "isp1.2", "isp2"]
    assert all(c["device"] and c["sourceip"] for c in conns)
    assert {c["eventscript"] for c in conns} == {"/hook"}


BAD = [
    ({"multihome_uplinks": []}, "multihome_uplinks"),
    ({"multihome_lans": []}, "multihome_lans"),
    ({"multihome_uplinks__1__name": "isp1"}, r"multihome_uplinks\[1\]\.name"),
    ({"multihome_uplinks__1__name": "bad name"}, r"multihome_uplinks\[1\]\.name"),
    ({"multihome_uplinks__1__name": "x" * 13}, r"multihome_uplinks\[1\]\.name"),
    ({"multihome_uplinks__1__interface": "wan1"}, r"multihome_uplinks\[1\]\.interface"),
    ({"multihome_uplinks__1__interface": "wan;rm"}, r"multihome_uplinks\[1\]\.interface"),
    ({"multihome_uplinks__1__gateway": "198.51.100.9"}, r"multihome_uplinks\[1\]\.gateway"),
    ({"multihome_uplinks__1__gateway": "198.51.100.6"}, r"multihome_uplinks\[1\]\.gateway"),
    ({"multihome_uplinks__1__gateway": KeyError}, r"multihome_uplinks\[1\]\.gateway"),
    ({"multihome_uplinks__1__address": "198.51.100.6"}, r"multihome_uplinks\[1\]\.address"),
    ({"multihome_uplinks__1__address": "2001:db8::1/64"}, r"multihome_uplinks\[1\]\.address"),
    ({"multihome_uplinks__1__address": "198.51.100.4/30"}, r"multihome_uplinks\[1\]\.address"),
    ({"multihome_uplinks__0__gateway6": "2001:db8:f2::1"}, r"multihome_uplinks\[0\]\.gateway6"),
    ({"multihome_uplinks__1__targets": []}, r"multihome_uplinks\[1\]\.targets"),
    ({"multihome_uplinks__1__targets": KeyError}, r"multihome_uplinks\[1\]\.targets"),
    ({"multihome_uplinks__1__targets": ["not-an-ip"]}, r"multihome_uplinks\[1\]\.targets\[0\]"),
    ({"multihome_uplinks__1__targets": ["2001:db8::1"]}, r"multihome_uplinks\[1\]\.targets\[0\]"),
    ({"multihome_uplinks__1__weight": -1}, r"multihome_uplinks\[1\]\.weight"),
    ({"multihome_uplinks__1__tier": "high"}, r"multihome_uplinks\[1\]\.tier"),
    ({"multihome_uplinks__1__nat": "nat66"}, r"multihome_uplinks\[1\]\.nat"),
    ({"multihome_uplinks__1__mark": 0x1}, r"multihome_uplinks\[1\]\.mark"),
    ({"multihome_uplinks__1__table": 255}, r"multihome_uplinks\[1\]\.table"),
    ({"multihome_uplinks__1__monitor": {"interval_ms": 5}}, r"multihome_uplinks\[1\]\.monitor\.interval_ms"),
    ({"multihome_uplinks__1__monitor": {"speed": 1}}, r"multihome_uplinks\[1\]\.monitor\.speed"),
    ({"multihome_lans__0__interface": "wan2"}, r"multihome_lans\[0\]\.interface"),
    ({"multihome_lans__0__prefixes": ["192.168.1.1/24"]}, r"multihome_lans\[0\]\.prefixes\[0\]"),
    ({"multihome_balance_mode": "nth"}, "multihome_balance_mode"),
    ({"multihome_backend": "pf"}, "multihome_backend"),
    ({"multihome_mark_mask": 0}, "multihome_mark_mask"),
    ({"multihome_monitor_profile": "turbo"}, "multihome_monitor_profile"),
    ({"multihome_failover": "yes"}, "multihome_failover"),
    ({"multihome_local_default_uplink": "isp9"}, "multihome_local_default_uplink"),
    ({"multihome_pins": [{"uplink": "isp9", "destinations": ["192.0.2.0/24"]}]},
     r"multihome_pins\[0\]\.uplink"),
    ({"multihome_bypass": ["not-a-prefix"]}, r"multihome_bypass\[0\]"),
]


@pytest.mark.parametrize(("changes", "option"), BAD, ids=[b[1] + str(i) for i, b in enumerate(BAD)])
def test_bad_input_names_the_variable(changes, option) -> None:
    role_vars = variant(**{k: v for k, v in changes.items() if "__" in k})
    role_vars.update({k: v for k, v in changes.items() if "__" not in k})
    with pytest.raises(ValidationError) as err:
        build_model(role_vars)
    import re

    assert re.match(option, err.value.option), (err.value.option, str(err.value))
    assert err.value.allowed


def test_failover_off_needs_no_targets() -> None:
    role_vars = variant(multihome_uplinks__1__targets=KeyError)
    role_vars["multihome_failover"] = False
    assert build_model(role_vars)["failover"]["enabled"] is False
