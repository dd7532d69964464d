"""Validation and new-flow choice of the balancing model (pure, no kernel)."""

from __future__ import annotations

import pytest

# isort: off
from test_policy_params import INTERFACES, params, with_ipv6, with_uplink  # puts the collection on sys.path
from ansible_collections.netops.multihome.plugins.module_utils.engine.errors import (
    ValidationError,
)
from ansible_collections.netops.multihome.plugins.module_utils.engine.model.policy import (
    parse_policy,
    policy_marks,
)
from ansible_collections.netops.multihome.plugins.module_utils.engine.ruleset.choice import (
    active_pins,
    plan_choice,
    weighted_sequence,
)
# isort: on


def _lan(**changes):
    p = params()
    p["lans"][1].update(changes)
    return p


BAD = [
    # (params, option named in the message, offending value in the message)
    (with_uplink(1, name="isp1"), "uplinks[1].name", "isp1"),
    (with_uplink(2, mark="0x100"), "uplinks[2].mark", "0x100"),
    (with_uplink(0, mark="0x1"), "uplinks[0].mark", "0x1"),
    (with_uplink(0, mark=0), "uplinks[0].mark", "0"),
    (params(mark_mask=0), "mark_mask", "0"),
    (with_uplink(1, weight=-1), "uplinks[1].weight", "-1"),
    (with_uplink(0, nat="snat", snat_address=None), "uplinks[0].snat_address", "None"),
    (with_uplink(0, snat_address="198.51.100.300"), "uplinks[0].snat_address", "198.51.100.300"),
    (with_uplink(1, interface="wan9"), "uplinks[1].interface", "wan9"),
    (_lan(interfaces=["lan7"]), "lans[1].interfaces[0]", "lan7"),
    (params(pins=[{"uplink": "isp9", "sources": ["192.168.1.0/24"]}]), "pins[0].uplink", "isp9"),
    (_lan(prefixes=["192.168.1.128/25"]), "lans[1].prefixes[0]", "192.168.1.128/25"),
    (params(bypass=["10.0.0.0/33"]), "bypass[0]", "10.0.0.0/33"),
    (params(bypass=["not-a-prefix"]), "bypass[0]", "not-a-prefix"),
    (
        with_uplink(0, nptv6=[{"inside": "fd00:0:1:1::/64", "outside": "2001:db8:101::/48"}]),
        "uplinks[0].nptv6[0].outside",
        "2001:db8:101::/48",
    ),
    (
        with_uplink(0, nptv6=[{"inside": "fd00:9::/64", "outside": "2001:db8:101:1::/64"}]),
        "uplinks[0].nptv6[0].inside",
        "fd00:9::/64",
    ),
    (params(mode="least_used"), "mode", "least_used"),
    (params(backend="pf"), "backend", "pf"),
    (with_uplink(1, state="maybe"), "uplinks[1].state", "maybe"),
    (with_uplink(1, name="isp-2"), "uplinks[1].name", "isp-2"),
    (with_uplink(1, interface="lan1"), "lans[0].interfaces[0]", "lan1"),
    (params(uplinks=[]), "uplinks", "[]"),
]


def _v6(**changes):
    p = with_ipv6()
    for i, extra in changes.pop("uplinks", {}).items():
        p["uplinks"][i].update(extra)
    p.update(changes)
    return p


def _v6_lan1(*prefixes):
    p = with_ipv6()
    p["lans"][0]["prefixes"] = ["192.168.1.0/24", *prefixes]
    return p


# IPv6 is not NATed: every LAN IPv6 address needs an uplink that translates or owns it.
BAD += [
    (_lan(prefixes=["192.168.2.0/24", "fd00:0:1:2::/64"]), "lans[1].prefixes[1]", "fd00:0:1:2::/64"),
    (_v6_lan1("fd00:0:1::/56", "2001:db8:101:1::/64"), "lans[0].prefixes[1]", "fd00:0:1::/56"),
    (_v6(uplinks={0: {"weight": 0}, 1: {"weight": 0}}), "uplinks[].weight", "'isp2': 0"),
    (
        _v6(pins=[{"uplink": "isp3", "sources": ["fd00:0:1:1::10/128"]}]),
        "pins[0].sources[0]",
        "fd00:0:1:1::10/128",
    ),
    (
        _v6(pins=[{"uplink": "isp3", "destinations": ["2001:db8:ffff::/48"]}]),
        "pins[0].destinations[0]",
        "2001:db8:ffff::/48",
    ),
]


def test_ipv6_message_names_the_uncarried_part():
    with pytest.raises(ValidationError, match=r"no uplink can carry fd00:0:1::/64"):
        parse_policy(_v6_lan1("fd00:0:1::/56", "2001:db8:101:1::/64"), INTERFACES)
    # covered by two uplinks' prefixes together: accepted
    p = _v6_lan1("fd00:0:1:1::/64", "2001:db8:101:1::/64", "2001:db8:201:1::/64")
    p["uplinks"][1]["source_prefixes"] = ["2001:db8:201:1::/64"]
    parse_policy(p, INTERFACES)


@pytest.mark.parametrize("bad,option,value", BAD, ids=[f"{b[1]}={b[2]}" for b in BAD])
def test_bad_input_names_option_value_and_allowed(bad, option, value):
    with pytest.raises(ValidationError) as err:
        parse_policy(bad, INTERFACES)
    msg = str(err.value)
    assert err.value.option == option
    assert msg.startswith(option + ":")
    assert value in msg
    assert err.value.allowed and err.value.allowed in msg


def test_tier_with_all_weights_zero_is_rejected():
    p = params()
    p["uplinks"][2].update(weight=0, tier=2)
    with pytest.raises(ValidationError) as err:
        parse_policy(p, INTERFACES)
    assert "tier 2" in err.value.allowed and "isp3" in str(err.value)


def test_good_input_parses_marks_and_hex_strings():
    pol = parse_policy(params(), INTERFACES)
    assert policy_marks(pol) == {"isp1": (0x100, 0xFF00), "isp2": (0x200, 0xFF00), "isp3": (0x300, 0xFF00)}
    assert pol.uplink("isp1").nat == "snat" and str(pol.uplink("isp1").snat_address) == "198.51.100.2"
    assert pol.uplink("isp2").nat == "masquerade"


def test_weighted_sequence_is_exact_and_interleaved():
    seq = weighted_sequence([("a", 2), ("b", 1), ("c", 1)])
    assert sorted(seq) == ["a", "a", "b", "c"]
    assert seq[0] == "a" and seq[1] != "a"  # not "a a b c"
    assert weighted_sequence([("a", 10), ("b", 20)]) == ["b", "a", "b"]  # reduced by gcd
    assert weighted_sequence([("a", 0), ("b", 3)]) == ["b"]


def test_down_uplink_gets_no_slot_and_its_pins_are_dropped():
    pol = parse_policy(params(), INTERFACES)
    choice = plan_choice(pol, {"isp2": "down"})
    assert set(choice.slots) == {"isp1", "isp3"} and choice.slots.count("isp1") == 2
    assert active_pins(pol, {"isp2": "down"}) == []
    assert [p.uplink for p in active_pins(pol)] == ["isp2"]


def test_tiers_only_top_tier_then_next_takes_over():
    p = params()
    p["uplinks"][2]["tier"] = 2
    pol = parse_policy(p, INTERFACES)
    assert set(plan_choice(pol).slots) == {"isp1", "isp2"}
    assert set(plan_choice(pol, {"isp1": "down"}).slots) == {"isp2"}
    assert plan_choice(pol, {"isp1": "down", "isp2": "down"}).slots == ("isp3",)


def test_everything_down_keeps_top_tier_in_rotation():
    pol = parse_policy(params(), INTERFACES)
    choice = plan_choice(pol, {"isp1": "down", "isp2": "down", "isp3": "down"})
    assert choice.all_down and sorted(choice.slots) == ["isp1", "isp1", "isp2", "isp3"]


def test_source_hash_moves_only_clients_of_the_dead_uplink():
    pol = parse_policy(params(mode="source_hash"), INTERFACES)
    before = plan_choice(pol).slots
    after = plan_choice(pol, {"isp2": "down"}).slots
    assert len(before) == len(after) == 4
    for old, new in zip(before, after):
        if old != "isp2":
            assert new == old
        else:
            assert new in ("isp1", "isp3")


def test_states_override_must_name_a_known_uplink():
    pol = parse_policy(params(), INTERFACES)
    with pytest.raises(ValidationError) as err:
        plan_choice(pol, {"isp9": "down"})
    assert err.value.option == "states"


def test_absent_needs_no_uplinks():
    pol = parse_policy({"state": "absent", "backend": "iptables"})
    assert not pol.present and pol.backend == "iptables"
