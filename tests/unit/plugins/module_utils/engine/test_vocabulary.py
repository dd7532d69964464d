"""One validation vocabulary: the role's argument_specs, the modules' argument_spec and
documentation, and the engine's checks say the same (this test fails when one drifts)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

# isort: off
from test_policy_params import params  # puts the collection on sys.path
from ansible_collections.netops.multihome.plugins.module_utils.engine.errors import ValidationError
from ansible_collections.netops.multihome.plugins.module_utils.engine.hook.lsm_args import parse_lsm_args
from ansible_collections.netops.multihome.plugins.module_utils.engine.model import vocabulary as vocab
from ansible_collections.netops.multihome.plugins.module_utils.engine.model.policy import (
    BACKENDS,
    MODES,
    NAT_KINDS,
    STATES,
    parse_policy,
)
from ansible_collections.netops.multihome.plugins.module_utils.engine.model.profiles import PROFILES
from ansible_collections.netops.multihome.plugins.module_utils.engine.model.role import build_model
from ansible_collections.netops.multihome.plugins.module_utils.engine.model.table_spec import parse_params
from ansible_collections.netops.multihome.plugins.modules import conntrack_balance
# isort: on

ROOT = Path(__file__).resolve().parents[5]
ROLE_SPECS = yaml.safe_load((ROOT / "roles/multihome/meta/argument_specs.yml").read_text())
ROLE = ROLE_SPECS["argument_specs"]["main"]["options"]
ROLE_UPLINKS = {
    "multihome_uplinks": [
        {"name": "isp1", "interface": "wan1", "address": "198.51.100.2/30", "gateway": "198.51.100.1",
         "targets": ["203.0.113.1"]},
    ],
    "multihome_lans": [{"name": "lan1", "interface": "lan1", "prefixes": ["192.168.1.0/24"]}],
}


def doc(module) -> dict:
    return yaml.safe_load(module.DOCUMENTATION)["options"]


def test_role_and_module_choices_are_the_engines():
    assert ROLE["multihome_backend"]["choices"] == list(BACKENDS)
    assert ROLE["multihome_balance_mode"]["choices"] == list(MODES)
    assert sorted(ROLE["multihome_uplinks"]["options"]["nat"]["choices"]) == sorted(NAT_KINDS)
    assert ROLE["multihome_monitor_profile"]["choices"] == list(PROFILES)
    spec = conntrack_balance.ARGUMENT_SPEC
    assert spec["backend"]["choices"] == list(BACKENDS)
    assert spec["mode"]["choices"] == list(MODES)
    assert spec["uplinks"]["options"]["nat"]["choices"] == list(NAT_KINDS)
    assert spec["uplinks"]["options"]["state"]["choices"] == list(STATES)


@pytest.mark.parametrize("text", [
    ROLE["multihome_uplinks"]["options"]["name"]["description"],
    ROLE["multihome_lans"]["options"]["name"]["description"],
    " ".join(doc(conntrack_balance)["uplinks"]["suboptions"]["name"]["description"]),
    doc(conntrack_balance)["lans"]["suboptions"]["name"]["description"],
])
def test_every_documented_name_rule_is_the_vocabularys(text):
    assert re.search(rf"\b1-{vocab.NAME_MAX}\b", text), text


def _role_vars(name: str, interface: str = "wan1") -> dict:
    out = {k: [dict(x) for x in v] for k, v in ROLE_UPLINKS.items()}
    out["multihome_uplinks"][0].update(name=name, interface=interface)
    return out


def _module_params(name: str, interface: str = "wan1") -> dict:
    out = params()
    out["uplinks"][0] = dict(out["uplinks"][0], name=name, interface=interface)
    return out


LONGEST = "a" + "b" * (vocab.NAME_MAX - 1)


@pytest.mark.parametrize("name, accepted", [(LONGEST, True), (LONGEST + "c", False), ("1isp", False),
                                            ("isp-1", False)])
def test_role_module_and_hook_accept_the_same_uplink_names(name, accepted):
    outcomes = []
    for check in (
        lambda: build_model(_role_vars(name)),
        lambda: parse_policy(_module_params(name), None),
        lambda: parse_lsm_args(["up", name], [name]),
    ):
        try:
            check()
            outcomes.append(True)
        except ValidationError as exc:
            assert "name" in exc.option, exc
            outcomes.append(False)
    assert outcomes == [accepted] * 3


@pytest.mark.parametrize("ifname, accepted", [("wan1.100", True), ("e" * 15, True), ("e" * 16, False),
                                              ("wan;rm", False), ("a/b", False), ("..", False)])
def test_role_and_both_modules_accept_the_same_interface_names(ifname, accepted):
    outcomes = []
    for check in (
        lambda: build_model(_role_vars("isp1", ifname)),
        lambda: parse_policy(_module_params("isp1", ifname), None),
        lambda: parse_params({"name": "t", "id": 100, "rules": [{"priority": 100, "iif": ifname}]}),
    ):
        try:
            check()
            outcomes.append(True)
        except ValidationError as exc:
            assert "interface" in exc.option or "iif" in exc.option, exc
            outcomes.append(False)
    assert outcomes == [accepted] * 3


def test_interface_may_be_absent_is_one_switch_in_role_module_and_table():
    role = ROLE["multihome_uplinks"]["options"]["interface_may_be_absent"]
    module = conntrack_balance.ARGUMENT_SPEC["uplinks"]["options"]["interface_may_be_absent"]
    assert (role["type"], role["default"]) == (module["type"], module["default"]) == ("bool", False)
    assert doc(conntrack_balance)["uplinks"]["suboptions"]["interface_may_be_absent"]["default"] is False
    raw = {**ROLE_UPLINKS["multihome_uplinks"][0], "interface_may_be_absent": True}
    model = build_model({**ROLE_UPLINKS, "multihome_uplinks": [raw]})
    assert model["balance"]["uplinks"][0]["interface_may_be_absent"] is True
    assert parse_params(model["routing"][0]).dev_may_be_absent is True
    assert parse_policy(model["balance"]).uplinks[0].may_be_absent is True
    with pytest.raises(ValidationError, match=r"multihome_uplinks\[0\]\.interface_may_be_absent.*'yes'"):
        build_model({**ROLE_UPLINKS, "multihome_uplinks": [{**raw, "interface_may_be_absent": "yes"}]})


def test_addressing_choices_are_the_engines_and_bad_combinations_name_the_variable():
    from ansible_collections.netops.multihome.plugins.module_utils.engine.model.role import ADDRESSING

    assert ROLE["multihome_uplinks"]["options"]["addressing"]["choices"] == list(ADDRESSING)
    base = ROLE_UPLINKS["multihome_uplinks"][0]
    dhcp = {k: v for k, v in base.items() if k not in ("address", "gateway")} | {"addressing": "dhcp"}
    model = build_model({**ROLE_UPLINKS, "multihome_uplinks": [dhcp]})
    assert model["routing"][0]["learn_from"] == "wan1"
    assert model["balance"]["uplinks"][0]["nat"] == "masquerade"
    with pytest.raises(ValidationError, match=r"uplinks\[0\]\.address: .*nothing when addressing is dhcp"):
        build_model({**ROLE_UPLINKS, "multihome_uplinks": [{**base, "addressing": "dhcp"}]})
    with pytest.raises(ValidationError, match=r"multihome_uplinks\[0\]\.addressing: invalid value 'dchp'"):
        build_model({**ROLE_UPLINKS, "multihome_uplinks": [{**dhcp, "addressing": "dchp"}]})
    with pytest.raises(ValidationError, match=r"multihome_uplinks\[0\]\.nat: .*no static IPv4 address"):
        build_model({**ROLE_UPLINKS, "multihome_uplinks": [{**dhcp, "nat": "snat"}]})


def test_point_to_point_and_link_local_gateways():
    base = ROLE_UPLINKS["multihome_uplinks"][0]
    p2p = {**base, "address": "100.64.9.2/32", "gateway": "100.64.9.1"}
    routes = build_model({**ROLE_UPLINKS, "multihome_uplinks": [p2p]})["routing"][0]["routes"]
    assert {"dest": "default", "gateway": "100.64.9.1", "dev": "wan1", "onlink": True} in routes
    with pytest.raises(ValidationError, match=r"multihome_uplinks\[0\]\.gateway: invalid value '100.64.9.1'"):
        build_model({**ROLE_UPLINKS, "multihome_uplinks": [{**p2p, "address": "100.64.8.2/30"}]})
    v6 = {**base, "address6": "2001:db8:1::2/64", "gateway6": "fe80::1%wan1"}
    routes6 = build_model({**ROLE_UPLINKS, "multihome_uplinks": [v6]})["routing"][0]["routes"]
    assert {"dest": "default", "gateway": "fe80::1", "dev": "wan1"} in routes6
    with pytest.raises(ValidationError, match=r"gateway6: invalid value 'fe80::1%wan9'"):
        build_model({**ROLE_UPLINKS, "multihome_uplinks": [{**v6, "gateway6": "fe80::1%wan9"}]})
