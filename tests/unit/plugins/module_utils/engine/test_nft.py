"""nftables rendering and planning (pure; the kernel round trip is in the integration tests)."""

from __future__ import annotations

# isort: off
import ipaddress
from test_policy_params import INTERFACES, params, with_ipv6, with_uplink  # puts the collection on sys.path
from ansible_collections.netops.multihome.plugins.module_utils.engine.ruleset import nft
from ansible_collections.netops.multihome.plugins.module_utils.engine.model.policy import parse_policy
from ansible_collections.netops.multihome.plugins.module_utils.engine.runner import CmdResult, Runner
from ansible_collections.netops.multihome.plugins.module_utils.engine.ruleset.plan import plan_ruleset
# isort: on


def chains(p=None, states=None):
    pol = parse_policy(p or params(), INTERFACES)
    return nft.render_chains(plan_ruleset(pol, states))


def objects(p=None, states=None):
    return nft.render_objects(plan_ruleset(parse_policy(p or params(), INTERFACES), states))


def test_marked_flows_take_one_map_lookup_and_only_new_unmarked_flows_are_chosen():
    pre = chains()["prerouting"]
    assert pre == [
        "type filter hook prerouting priority mangle - 10; policy accept;",
        "ct mark & 0x0000ff00 vmap @restore",
        "ct state != new accept",
        "ct mark & 0x0000ff00 != 0x00000000 accept",
        "iifname vmap @ingress",
    ]
    o = objects()
    assert o["restore"].body == (
        "0x00000100 : goto restore_isp1", "0x00000200 : goto restore_isp2", "0x00000300 : goto restore_isp3")
    assert chains()["restore_isp2"] == ["meta mark set meta mark & 0xffff02ff | 0x00000200"]
    # inbound on an uplink: mark for that uplink; LAN traffic goes on to the LAN chain
    assert '"wan2" : goto mark_isp2' in o["ingress"].body
    assert '"lan1" : goto from_lan' in o["ingress"].body


def test_mark_chain_sets_only_bits_under_the_mask():
    assert chains()["mark_isp3"] == [
        "ct mark set ct mark & 0xffff03ff | 0x00000300",
        "meta mark set meta mark & 0xffff03ff | 0x00000300",
    ]


def test_lan_to_lan_bypass_and_local_are_never_marked():
    lan = chains(with_ipv6())["from_lan"]
    assert lan[0] == "ip6 saddr != :: fib saddr . iif oif missing drop"  # IPv6 reverse-path check
    assert lan[1:3] == ["ip daddr @unbalanced4 accept", "ip6 daddr @unbalanced6 accept"]
    o = objects(with_ipv6())
    assert o["unbalanced4"] == nft.NftObject(
        "set", ("type ipv4_addr", "flags interval"), ("10.0.0.0/8", "192.168.1.0/24", "192.168.2.0/24"))
    assert "fd00:0:1:1::/64" in o["unbalanced6"].body
    assert "fib daddr type { local, broadcast, multicast } accept" in lan
    assert lan[-1] == "goto pins"


def test_interval_maps_keep_first_match_order_without_overlaps():
    nets = [ipaddress.ip_network(n) for n in ("10.1.0.0/16", "10.0.0.0/8", "10.1.2.0/24")]
    out = nft.disjoint([(nets[0], "a"), (nets[1], "b"), (nets[2], "c")])
    assert out[0] == (nets[0], "a")
    assert all(v == "b" for _n, v in out[1:])
    covered = sum(n.num_addresses for n, _v in out)
    assert covered == nets[1].num_addresses


def test_choose_modes():
    assert chains()["choose"] == [
        "numgen inc mod 4 vmap { 0 : goto mark_isp1, 1 : goto mark_isp2, 2 : goto mark_isp3, 3 : goto mark_isp1 }"  # noqa: E501
    ]
    assert chains(params(mode="random"))["choose"][0].startswith("numgen random mod 4 vmap")
    hashed = chains(params(mode="source_hash"))["choose"]
    assert len(hashed) == 1 and hashed[0].startswith("jhash ip saddr mod 4 seed 0x4d48 vmap")


def test_ipv4_is_never_chosen_for_an_uplink_without_nat():
    p = params()
    p["uplinks"][2]["nat"] = "none"
    assert chains(p)["choose"] == [
        "numgen inc mod 3 vmap { 0 : goto mark_isp1, 1 : goto mark_isp2, 2 : goto mark_isp1 }"]
    for up in p["uplinks"]:
        up["nat"] = "none"
        up.pop("snat_address", None)
    assert chains(p)["choose"] == []


def test_pins_follow_state_and_end_in_the_choice():
    assert objects()["pins_destination4"].body == ("203.0.113.0/24 : goto mark_isp2",)
    assert chains()["pins"][-1] == "goto choose"
    assert objects(states={"isp2": "down"})["pins_destination4"].body == ()
    p = with_ipv6(pins=[{"uplink": "isp2", "sources": ["192.168.1.10/32", "fd00:0:1:1::10/128"]}])
    assert objects(p)["pins_source4"].body == ("192.168.1.10 : goto mark_isp2",)
    assert objects(p)["pins_source6"].body == ("fd00:0:1:1::10 : goto mark_isp2",)


def test_ipv6_is_balanced_only_among_uplinks_that_translate_its_source():
    p = with_ipv6(pins=[{"uplink": "isp2", "destinations": ["203.0.113.0/24", "2001:db8:ffff::/48"]}])
    c = chains(p)
    # isp3 translates nothing: it never appears in the IPv6 choice
    assert c["choose6_0"] == [
        "numgen inc mod 3 vmap { 0 : goto mark_isp1, 1 : goto mark_isp2, 2 : goto mark_isp1 }"
    ]
    assert c["pins"] == [
        "ip saddr vmap @pins_source4",
        "ip6 saddr vmap @pins_source6",
        "ip daddr vmap @pins_destination4",
        "ip6 saddr fd00:0:1:1::/64 ip6 daddr 2001:db8:ffff::/48 goto mark_isp2",
        "ip6 saddr vmap @translated6",
        "meta nfproto ipv6 accept",
        "goto choose",
    ]
    o = objects(p)
    assert o["translated6"].body == ("fd00:0:1:1::/64 : goto choose6_0",)
    # the prefix isp1 owns stays on isp1, before any choice
    assert o["owned6"].body == ("2001:db8:101:1::/64 : goto mark_isp1",)
    assert chains(with_ipv6(), states={"isp1": "down"})["choose6_0"] == [
        "numgen inc mod 1 vmap { 0 : goto mark_isp2 }"
    ]
    hashed = chains(with_ipv6(mode="source_hash"))["choose6_0"]
    assert len(hashed) == 1 and hashed[0].startswith("jhash ip6 saddr mod 3 seed 0x4d48")


def test_nat_per_uplink_and_nptv6():
    p = with_uplink(1, nptv6=[{"inside": "fd00:0:1:1::/64", "outside": "2001:db8:201:1::/64"}])
    p["lans"][0]["prefixes"].append("fd00:0:1:1::/64")
    p["uplinks"][2]["nat"] = "none"
    c = chains(p)
    assert c["postrouting"] == [
        "type nat hook postrouting priority srcnat; policy accept;",
        "ip daddr 10.0.0.0/8 return",
        'oifname "wan1" meta nfproto ipv4 snat ip to 198.51.100.2',
        'oifname "wan2" meta nfproto ipv4 masquerade',
        'oifname "wan2" snat ip6 prefix to ip6 saddr map { fd00:0:1:1::/64 : 2001:db8:201:1::/64 }',
    ]
    assert c["nptv6_in"][1] == (
        'iifname "wan2" dnat ip6 prefix to ip6 daddr map { 2001:db8:201:1::/64 : fd00:0:1:1::/64 }'
    )
    assert "nptv6_in" not in chains()


def test_format_and_parse_round_trip_including_wrapped_elements():
    o = objects(with_ipv6())
    text = nft.format_table(o)
    assert text.startswith("table inet netops_multihome {\n\tmap restore {\n\t\ttype mark : verdict")
    assert nft.parse_table(text) == o
    wrapped = text.replace("192.168.1.0/24, 192.168.2.0/24", "192.168.2.0/24,\n\t\t\t     192.168.1.0/24")
    assert wrapped != text and nft.parse_table(wrapped) == o


def test_plan_create_noop_small_change_replace_and_delete():
    o = objects()
    have = nft.parse_table(nft.format_table(o))
    create = nft.plan(None, o)
    assert create.startswith("table inet netops_multihome\ndelete table inet netops_multihome\n")
    assert nft.plan(have, o) is None
    assert nft.describe(have, o) == []

    down = objects(states={"isp2": "down"})
    small = nft.plan(have, down)
    assert small.startswith(
        "flush map inet netops_multihome pins_destination4\nflush chain inet netops_multihome choose\n"
    )
    assert "prerouting" not in small and "restore" not in small
    assert nft.describe(have, down) == ["replace map pins_destination4", "replace chain choose"]

    bigger = objects(with_ipv6())
    assert nft.plan(have, bigger).startswith("table inet netops_multihome\ndelete table")
    assert "add chain nptv6_in" in nft.describe(have, bigger)

    assert nft.plan(have, None) == "delete table inet netops_multihome\n"
    assert nft.plan(None, None) is None


class FakeRunner(Runner):
    def __init__(self, rc, stdout="", stderr=""):
        self.result = (rc, stdout, stderr)
        self.calls = []

    def run(self, argv, stdin=None, check=True):
        self.calls.append((list(argv), stdin))
        return CmdResult(*self.result)


def test_read_current_absent_table_is_none():
    runner = FakeRunner(1, stderr="Error: No such file or directory; did you mean table 'x'")
    assert nft.read_current(runner) is None
    assert runner.calls[0][0] == ["nft", "list", "table", "inet", "netops_multihome"]


def test_apply_failure_reports_the_kernel_message():
    import pytest
    from ansible_collections.netops.multihome.plugins.module_utils.engine.errors import (
        EngineError,
    )

    with pytest.raises(EngineError, match="Could not process rule: No such file"):
        nft.load("x", FakeRunner(1, stderr="Error: Could not process rule: No such file or directory"))
