"""conntrack_balance on a real kernel: the lab's three_isp router r1, real flows, both backends.

The lab's server answers every connection with the source address it saw, so each flow's
uplink is read from what actually crossed the ISPs (198.51.100.2/.6/.10 = isp1/2/3), and
the ISPs' anti-spoofing counters show any packet that left with someone else's address.
The per-uplink routing tables come from the real policy_route_table module.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

import pytest
from ansible_collections.netops.multihome.plugins.module_utils.engine.errors import (
    EngineError,
    ValidationError,
)
from ansible_collections.netops.multihome.plugins.module_utils.engine.ruleset import apply as balance
from ansible_collections.netops.multihome.plugins.module_utils.engine.runner import CmdResult, Runner
from harness import Lab

LAB_TOPOLOGY = "three_isp"
BACKENDS = ["nftables", "iptables"]
ISPS = ["isp1", "isp2", "isp3"]
ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = ROOT / ".build" / "collections"
ANSIBLE_BIN = Path(sys.executable).parent
PINNED4 = "203.0.113.11"  # one of inet's server addresses, pinned to isp3
SITE4 = "203.0.113.130"  # the other site, behind r1's private site link
ROUTER_PORT = 5003
C1, C2 = "192.168.1.10", "192.168.2.10"
C1_ULA = "fd00:0:1:1::10"
C1_GUA = {1: "2001:db8:101:1::10", 2: "2001:db8:201:1::10"}
NPT_OUT = {1: "2001:db8:101:ff::/64", 2: "2001:db8:201:ff::/64"}  # lan1's ULA prefix
NPT_OUT2 = {1: "2001:db8:101:fe::/64", 2: "2001:db8:201:fe::/64"}  # lan2's
C2_ULA = "fd00:0:1:2::10"
# extra client addresses, so source_hash has sixteen clients to spread
HASH_SOURCES = {f"c{n}": [f"192.168.{n}.{20 + i}" for i in range(8)] for n in (1, 2)}


class LabRunner(Runner):
    """The engine's runner, but every command runs inside the lab router."""

    def __init__(self, lab: Lab, node: str = "r1") -> None:
        self.lab, self.node = lab, node

    def run(self, argv: Sequence[str], stdin: Optional[str] = None, check: bool = True) -> CmdResult:
        return super().run(self.lab.argv(self.node, argv), stdin=stdin, check=check)


def uplink_tables(lab: Lab, isps: Sequence[str] = tuple(ISPS), ipv6: bool = True) -> list:
    """What the role passes to policy_route_table for each uplink: a default route per family
    and the fwmark rule, plus the main-table suppress rule so connected routes win."""
    tables = []
    for k, isp in enumerate(isps, start=1):
        up = lab.uplink(isp)
        families = ("gateway4", "gateway6") if ipv6 else ("gateway4",)
        tables.append({
            "name": isp,
            "id": 100 + k,
            "routes": [{"dest": "default", "gateway": up[gw], "dev": up["router_if"]} for gw in families],
            "rules": [{"priority": 1000 + k, "fwmark": hex(k << 8), "fwmask": "0xff00"}],
            "main_suppress_default": {"priority": 999},
        })
    return tables


def playbook(lab: Lab, tmp: Path, tasks: list, extra: Sequence[str] = ()) -> None:
    """ansible-playbook inside r1 (its own /etc), as an administrator would run it there."""
    play = tmp / "play.yml"
    play.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]))
    lab.run("r1", ["env", f"ANSIBLE_COLLECTIONS_PATH={COLLECTIONS}", "ANSIBLE_NOCOLOR=1",
                   str(ANSIBLE_BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                   "-e", "ansible_python_interpreter=/usr/bin/python3", *extra, str(play)])


@pytest.fixture(scope="module")
def router(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Lab:
    tmp = tmp_path_factory.mktemp("ctb")
    playbook(lab, tmp, [{"netops.multihome.policy_route_table": "{{ item }}", "loop": uplink_tables(lab)}])
    lab.run("r1", ["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
                   "net.ipv4.conf.all.rp_filter=2", "net.ipv4.conf.all.src_valid_mark=1"])
    for client, sources in HASH_SOURCES.items():
        for address in sources:
            lab.run(client, ["ip", "addr", "add", f"{address}/24", "dev", "eth0"])
        lab.run(client, ["sysctl", "-qw", "net.ipv4.ip_local_port_range=10000 60999"])
    return lab


@pytest.fixture(autouse=True)
def clean_state(router: Lab):
    for isp in ISPS:
        router.isp_clear_faults(isp)
        router.isp_clear_probes(isp)
    flush_conntrack(router)
    yield
    for backend in BACKENDS:
        apply(router, {"state": "absent", "backend": backend})


def apply(lab: Lab, params: dict, states: Optional[dict] = None, check: bool = False) -> dict:
    return balance.apply_policy(params, LabRunner(lab), check=check, states=states)


def flush_conntrack(lab: Lab) -> None:
    lab.run("r1", ["conntrack", "-F"], check=False)


def wan4(lab: Lab) -> dict:
    return {k: lab.uplink_address(isp) for k, isp in enumerate(ISPS, start=1)}


def uplinks(lab: Lab, seen: Sequence[str]) -> Counter:
    isp_of = {lab.uplink_address(isp): isp for isp in ISPS}
    return Counter(isp_of.get(s, s) for s in seen)


def spoofed_total(lab: Lab) -> int:
    return sum(lab.spoofed(isp) for isp in ISPS)


def base_params(lab: Lab, backend: str, mode: str = "round_robin", **extra) -> dict:
    params = {
        "backend": backend,
        "mode": mode,
        "mark_mask": "0xff00",
        "uplinks": [
            {
                "name": "isp1",
                "interface": "wan1",
                "mark": "0x100",
                "weight": 2,
                "nat": "snat",
                "snat_address": wan4(lab)[1],
                "source_prefixes": ["2001:db8:101:1::/64"],
                "nptv6": [{"inside": "fd00:0:1:1::/64", "outside": NPT_OUT[1]},
                          {"inside": "fd00:0:1:2::/64", "outside": NPT_OUT2[1]}],
            },
            {
                "name": "isp2",
                "interface": "wan2",
                "mark": "0x200",
                "weight": 1,
                "source_prefixes": ["2001:db8:201:1::/64"],
                "nptv6": [{"inside": "fd00:0:1:1::/64", "outside": NPT_OUT[2]},
                          {"inside": "fd00:0:1:2::/64", "outside": NPT_OUT2[2]}],
            },
            # isp3 carries IPv4 only: no prefix of its own and no translation
            {"name": "isp3", "interface": "wan3", "mark": "0x300", "weight": 1},
        ],
        "lans": [
            {
                "name": "lan1",
                "interfaces": ["lan1"],
                "prefixes": ["192.168.1.0/24", "fd00:0:1:1::/64",
                             "2001:db8:101:1::/64", "2001:db8:201:1::/64"],
            },
            {"name": "lan2", "interfaces": ["lan2"], "prefixes": ["192.168.2.0/24", "fd00:0:1:2::/64"]},
        ],
        "pins": [{"uplink": "isp3", "destinations": [PINNED4 + "/32"]}],
        "bypass": ["203.0.113.128/25"],
    }
    params.update(extra)
    return params


def rotation_start(lab: Lab, backend: str, mode: str, **extra) -> dict:
    """Apply and return the params (a fresh apply resets the round-robin counter)."""
    params = base_params(lab, backend, mode, **extra)
    apply(lab, {"state": "absent", "backend": backend})
    apply(lab, params)
    return params


@pytest.mark.parametrize("backend", BACKENDS)
def test_reapply_is_noop_and_check_mode_changes_nothing(router: Lab, backend: str) -> None:
    params = base_params(router, backend)
    first = apply(router, params)
    assert first["changed"] and first["commands"]
    again = apply(router, params)
    assert again == {**again, "changed": False, "commands": [], "changes": []}
    assert again["before"] == again["after"] == first["after"]

    checked = apply(router, params, states={"isp2": "down"}, check=True)
    assert checked["changed"]
    assert apply(router, params)["changed"] is False  # check mode left the kernel alone
    small = apply(router, params, states={"isp2": "down"})
    # the failover change touches only the choice (and pins), never the restore rules
    assert all(("choose" in c.lower() or "pins" in c.lower()) for c in small["changes"]), small["changes"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_round_robin_is_exact_2_1_1_over_3000_flows_from_two_lans(router: Lab, backend: str) -> None:
    rotation_start(router, backend, "round_robin")
    seen = router.flows("c1", 1500) + router.flows("c2", 1500)
    assert uplinks(router, seen) == {"isp1": 1500, "isp2": 750, "isp3": 750}


@pytest.mark.parametrize("backend", BACKENDS)
def test_random_is_within_2pp_of_2_1_1(router: Lab, backend: str) -> None:
    rotation_start(router, backend, "random")
    seen = router.flows("c1", 3000) + router.flows("c2", 3000)
    counts = uplinks(router, seen)
    assert sum(counts[isp] for isp in ISPS) == 6000, counts
    for isp, target in (("isp1", 0.50), ("isp2", 0.25), ("isp3", 0.25)):
        assert abs(counts[isp] / 6000 - target) < 0.02, counts


@pytest.mark.parametrize("backend", BACKENDS)
def test_source_hash_keeps_each_client_on_one_uplink(router: Lab, backend: str) -> None:
    params = rotation_start(router, backend, "source_hash")

    def by_client() -> dict:
        out: dict = {}
        for client, sources in HASH_SOURCES.items():
            seen = router.flows(client, 8 * 6, src=sources)
            for i, src in enumerate(seen):
                out.setdefault(sources[i % 8], set()).add(src)
        return out

    before = by_client()
    assert all(len(s) == 1 for s in before.values()), before
    assert len({next(iter(s)) for s in before.values()}) >= 2  # the clients do spread
    apply(router, params, states={"isp2": "down"})
    flush_conntrack(router)
    after = by_client()
    isp2 = {wan4(router)[2]}
    for src, ups in before.items():
        assert len(after[src]) == 1
        if ups != isp2:
            assert after[src] == ups, (src, ups, after[src])  # clients of live uplinks never move
        else:
            assert after[src] != isp2


@pytest.mark.parametrize("backend", BACKENDS)
def test_long_flow_keeps_its_uplink_while_the_choice_changes(router: Lab, backend: str) -> None:
    params = rotation_start(router, backend, "round_robin")
    spoofed = spoofed_total(router)
    with router.stream("c1", count=1, duration=2.5, interval=0.02) as stream:
        port = stream.local_ports[0]
        for isp in ISPS:
            router.isp_probe(isp, f'iifname "r1" tcp sport {port} tcp dport 5001')
        router.flows("c1", 200)
        apply(router, params, states={"isp3": "down"})
        router.flows("c2", 200)
        apply(router, params, states={"isp1": "down"})
        router.flows("c2", 200)
    report = stream.reports[0]
    assert report["error"] is None and report["sent"] >= 60 and report["answered"] == report["sent"], report
    assert len(report["sources"]) == 1
    used = [k for k, isp in enumerate(ISPS, start=1) if router.isp_probed(isp) > 0]
    assert len(used) == 1 and wan4(router)[used[0]] == report["sources"][0]
    assert spoofed_total(router) == spoofed


def _syn_loss_run(lab: Lab) -> tuple:
    for isp in ISPS:
        lab.isp_drop(isp, 50, syn_only=True)
    spoofed = spoofed_total(lab)
    seen = lab.flows("c1", 60, parallel=60, timeout=8)
    lost = sum(lab.isp_dropped(isp) for isp in ISPS)
    for isp in ISPS:
        lab.isp_clear_faults(isp)
    return spoofed_total(lab) - spoofed, lost, seen


@pytest.mark.parametrize("backend", BACKENDS)
def test_retransmitted_syn_keeps_its_uplink_no_spoofed_drops(router: Lab, backend: str) -> None:
    rotation_start(router, backend, "round_robin")
    spoofed, lost, seen = _syn_loss_run(router)
    assert lost >= 10  # plenty of SYNs were retransmitted
    assert spoofed == 0
    assert sum(1 for s in seen if not s.startswith("error:")) >= 50


def test_reference_article_rules_leak_retransmitted_syns_as_spoofed(router: Lab) -> None:
    """The article's approach (re-choose on every ctstate NEW packet) that the module must beat."""
    wan = wan4(router)
    cmds = [
        "-t mangle -N MARK-ISP1",
        "-t mangle -A MARK-ISP1 -j MARK --set-mark 0x100",
        "-t mangle -A MARK-ISP1 -j CONNMARK --save-mark",
        "-t mangle -N MARK-ISP2",
        "-t mangle -A MARK-ISP2 -j MARK --set-mark 0x200",
        "-t mangle -A MARK-ISP2 -j CONNMARK --save-mark",
        "-t mangle -A PREROUTING -i lan1 -m conntrack --ctstate ESTABLISHED,RELATED -j CONNMARK --restore-mark",  # noqa: E501
        "-t mangle -A PREROUTING -i lan1 -m conntrack --ctstate NEW -m statistic --mode nth --every 2 --packet 0 -j MARK-ISP1",  # noqa: E501
        "-t mangle -A PREROUTING -i lan1 -m conntrack --ctstate NEW -m statistic --mode nth --every 2 --packet 1 -j MARK-ISP2",  # noqa: E501
        f"-t nat -A POSTROUTING -o wan1 -j SNAT --to-source {wan[1]}",
        f"-t nat -A POSTROUTING -o wan2 -j SNAT --to-source {wan[2]}",
    ]
    for c in cmds:
        router.run("r1", ["iptables", *c.split()])
    try:
        spoofed, lost, _ = _syn_loss_run(router)
    finally:
        for table in ("mangle", "nat"):
            router.run("r1", ["iptables", "-t", table, "-F"])
        router.run("r1", ["iptables", "-t", "mangle", "-X"])
    assert lost >= 10
    assert spoofed > 0


@contextmanager
def marked_flows_take_uplink_tables(lab: Lab) -> Iterator[None]:
    """Without the main-table suppress rule (priority 999) a marked packet follows its uplink
    table's default route even where main has a route: a LAN-to-LAN or bypass flow marked by
    mistake then leaves by an ISP, NATed, and never reaches its peer."""
    suppress = ["priority", "999", "lookup", "main", "suppress_prefixlength", "0"]
    lab.run("r1", ["ip", "rule", "del", *suppress])
    try:
        yield
    finally:
        lab.run("r1", ["ip", "rule", "add", *suppress])


def ct_marks(lab: Lab, dst: Optional[str] = None, family: int = 4, **match: str) -> List[int]:
    """The conntrack marks of the router's entries towards DST, or matching conntrack's own
    options (``proto="tcp", sport="10001"``)."""
    argv = ["conntrack", "-L", "-f", "ipv4" if family == 4 else "ipv6", *(["-d", dst] if dst else [])]
    for key, value in match.items():
        argv += [f"--{key}", value]
    out = lab.run("r1", argv, check=False).stdout
    return [int(mark) for mark in re.findall(r"\bmark=(\d+)", out)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_lan_to_lan_and_bypass_flows_are_unmarked_and_keep_their_source_pins_follow_uplinks(
        router: Lab, backend: str) -> None:
    params = rotation_start(router, backend, "round_robin")
    with marked_flows_take_uplink_tables(router), router.serve("c1", 5001), router.serve("c2", 5001):
        assert router.flows("c1", 5, dst=C2) == [C1] * 5  # LAN to LAN: not marked, not NATed
        assert router.flows("c2", 5, dst=C1) == [C2] * 5
        # bypass: main table via the site link, not NATed (an ISP would have dropped it as spoofed)
        assert router.flows("c1", 5, dst=SITE4) == [C1] * 5
    for dst in (C2, C1, SITE4):
        marks = ct_marks(router, dst)
        assert marks and not any(mark & 0xFF00 for mark in marks), (dst, marks)
    assert uplinks(router, router.flows("c1", 12, dst=PINNED4)) == {"isp3": 12}  # pinned destination
    apply(router, params, states={"isp3": "down"})
    assert uplinks(router, router.flows("c1", 12, dst=PINNED4)) == {"isp1": 8, "isp2": 4}  # pin follows


@pytest.mark.parametrize("backend", BACKENDS)
def test_tiers_and_down_uplinks_get_no_new_flows(router: Lab, backend: str) -> None:
    extra = base_params(router, backend)["uplinks"]
    extra[2]["tier"] = 2
    params = rotation_start(router, backend, "round_robin", uplinks=extra)
    assert uplinks(router, router.flows("c1", 300)) == {"isp1": 200, "isp2": 100}
    apply(router, params, states={"isp2": "down"})
    assert uplinks(router, router.flows("c2", 100)) == {"isp1": 100}
    apply(router, params, states={"isp1": "down", "isp2": "down"})
    assert uplinks(router, router.flows("c1", 100)) == {"isp3": 100}
    apply(router, params, states={"isp1": "up", "isp2": "up"})
    assert uplinks(router, router.flows("c1", 30)) == {"isp1": 20, "isp2": 10}


@pytest.mark.parametrize("backend", BACKENDS)
def test_inbound_connection_to_uplink2_is_answered_via_uplink2(router: Lab, backend: str) -> None:
    wan2 = wan4(router)[2]
    inet_side = router.plan["isps"]["isp2"]["inet4"].split("/")[0]
    with router.serve("r1", ROUTER_PORT):
        spoofed = spoofed_total(router)
        # reference: without the module r1 answers via its main default (isp1), which drops it
        seen = router.flows("inet", 2, dst=wan2, port=ROUTER_PORT, timeout=1.5)
        assert seen == ["error:timeout"] * 2
        assert spoofed_total(router) > spoofed
        apply(router, base_params(router, backend))
        spoofed = spoofed_total(router)
        assert router.flows("inet", 10, dst=wan2, port=ROUTER_PORT) == [inet_side] * 10
        assert spoofed_total(router) == spoofed


ADMIN_NFT = """table inet admin {
	chain input {
		type filter hook input priority filter; policy accept;
		tcp dport 9999 counter packets 0 bytes 0 drop
		ip saddr 192.0.2.0/24 meta mark set meta mark & 0xffffff00 | 0x00000007
	}
}
"""
ADMIN_IPTABLES = [
    ["iptables", "-A", "INPUT", "-p", "tcp", "--dport", "9998", "-j", "DROP"],
    ["iptables", "-t", "mangle", "-A", "PREROUTING", "-i", "lan2", "-p", "udp", "--dport", "9997",
     "-j", "MARK", "--set-xmark", "0x1/0xff"],
    ["iptables", "-t", "mangle", "-N", "ADMIN_MARKS"],
    ["iptables", "-t", "mangle", "-A", "ADMIN_MARKS", "-j", "CONNMARK", "--save-mark",
     "--nfmask", "0xff", "--ctmask", "0xff"],
    ["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "site0", "-p", "udp", "-j", "MASQUERADE"],
    ["ip6tables", "-A", "FORWARD", "-p", "tcp", "--dport", "9996", "-j", "REJECT"],
]


def foreign_snapshot(lab: Lab) -> str:
    """Everything the administrator owns on the router, as text."""
    parts = [lab.run("r1", ["nft", "list", "table", "inet", "admin"]).stdout]
    for tool in ("iptables-save", "ip6tables-save"):
        for table in ("filter", "mangle", "nat"):
            text = lab.run("r1", [tool, "-t", table]).stdout
            ours = [ln for ln in text.splitlines() if not ln.startswith("#") and "MH_" not in ln]
            parts.append("\n".join(ours))
    return "\n".join(parts)


@pytest.mark.parametrize("backend", BACKENDS)
def test_foreign_rules_are_identical_before_and_after(router: Lab, backend: str) -> None:
    router.run("r1", ["nft", "-f", "-"], stdin=ADMIN_NFT)
    for argv in ADMIN_IPTABLES:
        router.run("r1", argv)
    try:
        before = foreign_snapshot(router)
        params = base_params(router, backend)
        for step in (
            lambda: apply(router, params),
            lambda: apply(router, params),
            lambda: apply(router, params, states={"isp1": "down"}),
            lambda: apply(router, base_params(router, backend, "source_hash")),
            lambda: apply(router, {"state": "absent", "backend": backend}),
        ):
            step()
            assert foreign_snapshot(router) == before
    finally:
        router.run("r1", ["nft", "delete", "table", "inet", "admin"])
        for tool in ("iptables", "ip6tables"):
            for table in ("filter", "mangle", "nat"):
                router.run("r1", [tool, "-t", table, "-F"])
                router.run("r1", [tool, "-t", table, "-X"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_ipv6_only_via_uplinks_that_can_carry_it_and_nptv6_balanced(router: Lab, backend: str) -> None:
    """Three uplinks, only two translate or own IPv6: isp3 gets IPv4 flows but never an
    IPv6 one, so no IPv6 packet leaves with a source its ISP drops."""
    rotation_start(router, backend, "round_robin")
    spoofed = spoofed_total(router)
    native = router.flows("c1", 40, family=6, src=[C1_GUA[1], C1_GUA[2]])
    assert native == [C1_GUA[1], C1_GUA[2]] * 20  # no NAT, each prefix via its own ISP
    translated = router.flows("c1", 30, family=6, src=C1_ULA)
    assert Counter(translated) == {"2001:db8:101:ff::10": 20, "2001:db8:201:ff::10": 10}
    assert Counter(router.flows("c2", 30, family=6, src=C2_ULA)) == {
        "2001:db8:101:fe::10": 20, "2001:db8:201:fe::10": 10}
    assert uplinks(router, router.flows("c1", 40)) == {"isp1": 20, "isp2": 10, "isp3": 10}
    apply(router, base_params(router, backend, nptv6_inbound="any"), states={"isp1": "down"})
    assert Counter(router.flows("c1", 10, family=6, src=C1_ULA)) == {"2001:db8:201:ff::10": 10}
    assert spoofed_total(router) == spoofed
    # inbound to the translated address reaches the LAN host and is answered via isp2
    inet_side = router.plan["isps"]["isp2"]["inet6"].split("/")[0]
    with router.serve("c1", 5001):
        assert router.flows("inet", 3, dst="2001:db8:201:ff::10") == [inet_side] * 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_spoofed_ipv6_source_from_a_lan_never_leaves_the_router(router: Lab, backend: str) -> None:
    """IPv6 has no rp_filter: the ruleset drops a LAN host's packets sent from another LAN's
    prefix (NPTv6 would otherwise translate them and send them upstream)."""
    rotation_start(router, backend, "round_robin")
    for isp in ISPS:
        router.isp_probe(isp, "ip6 nexthdr tcp tcp dport 5001")
    spoof = "fd00:0:1:2::99"  # lan2's prefix, sent from c1 on lan1
    router.run("c1", ["ip", "addr", "add", f"{spoof}/128", "dev", "eth0", "nodad"])
    try:
        assert router.flows("c1", 3, family=6, src=spoof, timeout=0.5) == ["error:timeout"] * 3
        assert sum(router.isp_probed(isp) for isp in ISPS) == 0
        # the same host from its own address goes out as usual
        assert all(not r.startswith("error") for r in router.flows("c1", 3, family=6, src=C1_ULA))
        assert sum(router.isp_probed(isp) for isp in ISPS) > 0
    finally:
        router.run("c1", ["ip", "addr", "del", f"{spoof}/128", "dev", "eth0"])
        for isp in ISPS:
            router.isp_clear_probes(isp)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ipv6_prefix_no_uplink_can_carry_is_rejected_before_any_change(router: Lab, backend: str) -> None:
    apply(router, base_params(router, backend))
    listing = ruleset_text(router)
    bad = base_params(router, backend)
    bad["lans"][0]["prefixes"].append("2001:db8:301:1::/64")  # isp3's, but isp3 is IPv4-only here
    message = r"lans\[0\]\.prefixes\[4\]: invalid value '2001:db8:301:1::/64'"
    with pytest.raises(ValidationError, match=message):
        apply(router, bad)
    assert ruleset_text(router) == listing


def ruleset_text(lab: Lab) -> str:
    text = lab.run("r1", ["nft", "list", "ruleset"]).stdout + lab.run("r1", ["ip6tables-save"]).stdout
    return _without_counters(text)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_input_fails_before_any_change(router: Lab, backend: str) -> None:
    apply(router, base_params(router, backend))
    listing = _without_counters(router.run("r1", ["nft", "list", "ruleset"]).stdout)
    saved = router.run("r1", ["iptables-save"]).stdout
    bad = base_params(router, backend)
    bad["uplinks"][1]["interface"] = "wan9"
    with pytest.raises(ValidationError, match=r"uplinks\[1\]\.interface: invalid value 'wan9'"):
        apply(router, bad)
    bad = base_params(router, backend)
    bad["uplinks"][2]["mark"] = "0x10000"
    with pytest.raises(ValidationError, match=r"uplinks\[2\]\.mark.*inside mark_mask 0xff00"):
        apply(router, bad)
    assert _without_counters(router.run("r1", ["nft", "list", "ruleset"]).stdout) == listing
    assert _without_counters(router.run("r1", ["iptables-save"]).stdout) == _without_counters(saved)


class RefusingRunner(LabRunner):
    """The lab runner, but the committing run of REFUSED (not its test-load, not the reads)
    goes without CAP_NET_ADMIN: the kernel refuses that transaction for real."""

    def __init__(self, lab: Lab, refused: str) -> None:
        super().__init__(lab)
        self.refused = refused

    def run(self, argv: Sequence[str], stdin: Optional[str] = None, check: bool = True) -> CmdResult:
        commits = argv[0] == self.refused and stdin is not None and not {"-c", "--test"} & set(argv)
        argv = ["setpriv", "--bounding-set=-net_admin", *argv] if commits else argv
        return super().run(argv, stdin=stdin, check=check)


def full_ruleset(lab: Lab) -> str:
    text = lab.run("r1", ["nft", "list", "ruleset"]).stdout
    for tool in ("iptables-save", "ip6tables-save"):
        text += _without_counters(lab.run("r1", [tool]).stdout)
    return text


@pytest.mark.parametrize("backend,refused", [("nftables", "nft")])
def test_refused_transaction_leaves_the_previous_ruleset_and_its_balance_in_force(
        router: Lab, backend: str, refused: str) -> None:
    """A new policy (isp1's weight 2 -> 1, which changes both families) whose commit the kernel
    refuses. The error is reported and the previous ruleset, in every family, still balances
    2:1:1. (The iptables case, IPv4 committed and IPv6 refused, waits for the engine to roll
    the IPv4 commit back: issue 13, atomicity.)"""
    rotation_start(router, backend, "round_robin")
    before = full_ruleset(router)
    changed = base_params(router, backend)
    changed["uplinks"][0]["weight"] = 1
    with pytest.raises(EngineError):
        balance.apply_policy(changed, RefusingRunner(router, refused))
    assert full_ruleset(router) == before
    assert uplinks(router, router.flows("c1", 40)) == {"isp1": 20, "isp2": 10, "isp3": 10}


def _without_counters(save: str) -> str:
    """A listing without comments, chain counters (iptables-save) or rule counters (nft)."""
    lines = (ln for ln in save.splitlines() if not ln.startswith(("#", ":")))
    return "\n".join(re.sub(r"packets \d+ bytes \d+", "packets - bytes -", ln) for ln in lines)


def test_module_check_diff_apply_and_reapply(router: Lab, tmp_path: Path) -> None:
    """The real module through ansible-playbook inside r1: check, apply, re-apply in one play."""
    params = base_params(router, "nftables")
    tasks = [{"netops.multihome.conntrack_balance": params, "register": run, "check_mode": run == "check",
              "diff": True} for run in ("check", "apply", "again")]
    tasks.append({"copy": {"content": "{{ {'check': check, 'apply': apply, 'again': again} | to_json }}",
                           "dest": str(tmp_path / "out.json")}})
    playbook(router, tmp_path, tasks)
    results = json.loads((tmp_path / "out.json").read_text())
    assert results["check"]["changed"] and results["check"]["diff"]["before"] == ""
    assert "table inet netops_multihome" in results["check"]["diff"]["after"]
    assert results["apply"]["changed"] and results["apply"]["ruleset"] == results["check"]["ruleset"]
    assert results["again"]["changed"] is False and results["again"]["commands"] == []


def test_uplink_tables_come_from_policy_route_table(router: Lab) -> None:
    """The balancing above relies on these: one table per uplink, built by the module."""
    rules = router.run("r1", ["ip", "rule", "show"]).stdout
    assert "999:\tfrom all lookup main suppress_prefixlength 0" in rules
    for k, isp in enumerate(ISPS, start=1):
        assert f"{1000 + k}:\tfrom all fwmark 0x{k}00/0xff00 lookup {isp}" in rules
        conf = router.run("r1", ["cat", f"/etc/iproute2/rt_tables.d/{isp}.conf"]).stdout
        assert conf.endswith(f"{100 + k}\t{isp}\n")
        assert not os.path.exists(f"/etc/iproute2/rt_tables.d/{isp}.conf")  # host /etc untouched
