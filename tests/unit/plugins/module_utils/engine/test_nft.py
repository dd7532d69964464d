"""nftables rendering and planning (pure; the kernel round trip is in the integration tests)."""

from __future__ import annotations

# isort: off
from test_policy_params import INTERFACES, params, with_ipv6, with_uplink  # puts the collection on sys.path
from ansible_collections.netops.multihome.plugins.module_utils.engine.ruleset import nft
from ansible_collections.netops.multihome.plugins.module_utils.engine.model.policy import parse_policy
from ansible_collections.netops.multihome.plugins.module_utils.engine.ruleset.plan import plan_ruleset
# isort: on


def chains(p=None, states=None):
    pol = parse_policy(p or params(), INTERFACES)
    return nft.render_chains(plan_ruleset(pol, states))


def test_restore_comes_first_and_marked_connections_are_never_rechosen():
    pre = chains()["prerouting"]
    assert pre[0] == "type filter hook prerouting priority mangle; policy accept;"
    assert pre[1] == (
        "ct mark & 0x0000ff00 == 0x00000100 meta mark set meta mark & 0xffff01ff | 0x00000100 accept"
    )
    assert pre[4] == "ct mark & 0x0000ff00 != 0x00000000 accept"
    # inbound on an uplink: mark for that uplink; LAN traffic goes on to the LAN chain
    assert 'iifname "wan2" ct direction original goto mark_isp2' in pre
    assert pre[-2:] == ['iifname "lan1" goto from_lan', 'iifname "lan2" goto from_lan']


def test_mark_chain_sets_only_bits_under_the_mask():
    assert chains()["mark_isp3"] == [
        "ct mark set ct mark & 0xffff03ff | 0x00000300",
        "meta mark set meta mark & 0xffff03ff | 0x00000300",
    ]


def test_lan_to_lan_bypass_and_local_are_never_marked():
    lan = chains(with_ipv6())["from_lan"]
    assert lan[0] == "ct direction reply accept"
    assert lan[1] == "ip6 saddr != :: fib saddr . iif oif missing drop"  # IPv6 reverse-path check
    for dst in ("192.168.1.0/24", "192.168.2.0/24", "10.0.0.0/8"):
        assert f"ip daddr {dst} accept" in lan
    assert "ip6 daddr fd00:0:1:1::/64 accept" in lan
    assert "fib daddr type { local, broadcast, multicast } accept" in lan
    assert lan[-1] == "goto pins"


def test_choose_modes():
    assert chains()["choose"] == [
        "numgen inc mod 4 vmap { 0 : goto mark_isp1, 1 : goto mark_isp2, 2 : goto mark_isp3, 3 : goto mark_isp1 }"  # noqa: E501
    ]
    assert chains(params(mode="random"))["choose"][0].startswith("numgen random mod 4 vmap")
    hashed = chains(params(mode="source_hash"))["choose"]
    assert hashed[0].startswith("jhash ip saddr mod 4 seed 0x4d48 vmap")
    assert hashed[1].startswith("jhash ip6 saddr mod 4 seed 0x4d48 vmap")


def test_pins_follow_state_and_end_in_the_choice():
    assert chains()["pins"] == ["ip daddr 203.0.113.0/24 goto mark_isp2", "goto choose"]
    assert chains(states={"isp2": "down"})["pins"] == ["goto choose"]
    p = with_ipv6(pins=[{"uplink": "isp2", "sources": ["192.168.1.10/32", "fd00:0:1:1::10/128"]}])
    assert chains(p)["pins"][:2] == [
        "ip saddr 192.168.1.10 goto mark_isp2",
        "ip6 saddr fd00:0:1:1::10 goto mark_isp2",
    ]


def test_ipv6_is_balanced_only_among_uplinks_that_translate_its_source():
    c = chains(with_ipv6(pins=[{"uplink": "isp2", "destinations": ["203.0.113.0/24", "2001:db8:ffff::/48"]}]))
    # isp3 translates nothing: it never appears in the IPv6 choice
    assert c["choose6_0"] == [
        "numgen inc mod 3 vmap { 0 : goto mark_isp1, 1 : goto mark_isp2, 2 : goto mark_isp1 }"
    ]
    assert c["pins"] == [
        "ip daddr 203.0.113.0/24 goto mark_isp2",
        "ip6 saddr fd00:0:1:1::/64 ip6 daddr 2001:db8:ffff::/48 goto mark_isp2",
        "ip6 saddr fd00:0:1:1::/64 goto choose6_0",
        "meta nfproto ipv6 accept",
        "goto choose",
    ]
    # the prefix isp1 owns stays on isp1, before any choice
    assert "ip6 saddr 2001:db8:101:1::/64 goto mark_isp1" in c["from_lan"]
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


def test_format_and_parse_round_trip():
    c = chains()
    text = nft.format_table(c)
    assert text.startswith("table inet netops_multihome {\n\tchain mark_isp1 {\n\t\tct mark set")
    assert nft.parse_table(text) == c


def test_plan_create_noop_small_change_replace_and_delete():
    c = chains()
    text = nft.format_table(c)
    create = nft.plan(None, c)
    assert create.startswith("table inet netops_multihome\ndelete table inet netops_multihome\n")
    assert nft.plan(text, c) is None
    assert nft.describe(text, c) == []

    down = chains(states={"isp1": "down"})
    small = nft.plan(text, down)
    assert small.startswith(
        "flush chain inet netops_multihome choose\ntable inet netops_multihome {\n\tchain choose {"
    )
    assert "prerouting" not in small and "mark_isp" not in small.split("vmap")[0]
    assert nft.describe(text, down) == ["replace chain choose"]

    bigger = chains(with_ipv6())
    assert nft.plan(text, bigger).startswith("table inet netops_multihome\ndelete table")
    assert "add chain nptv6_in" in nft.describe(text, bigger)

    assert nft.plan(text, None) == "delete table inet netops_multihome\n"
    assert nft.plan(None, None) is None


class FakeRunner:
    def __init__(self, rc, stdout="", stderr=""):
        self.result = (rc, stdout, stderr)
        self.calls = []

    def run(self, argv, stdin=None, check=True):
        from ansible_collections.netops.multihome.plugins.module_utils.engine.runner import (
            CmdResult,
        )

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
