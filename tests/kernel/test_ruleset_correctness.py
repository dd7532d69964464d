"""The balancing ruleset on a real kernel: which flows are chosen, which are left alone, and
what the ruleset never touches (issue 13's ruleset items).

Same lab and helpers as ``test_conntrack_balance``: r1 of the three_isp topology, each flow's
uplink read from the source address the server saw.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Iterator, List, Optional, Sequence

import pytest
from ansible_collections.netops.multihome.plugins.module_utils.engine.errors import EngineError
from ansible_collections.netops.multihome.plugins.module_utils.engine.ruleset import apply as balance
from ansible_collections.netops.multihome.plugins.module_utils.engine.runner import CmdResult
from harness import Lab
from test_conntrack_balance import (  # noqa: F401  (router and clean_state are fixtures)
    BACKENDS,
    C1_ULA,
    ISPS,
    LabRunner,
    apply,
    base_params,
    clean_state,
    ct_marks,
    router,
    spoofed_total,
    uplinks,
    wan4,
)

LAB_TOPOLOGY = "three_isp"


def uplink_of_stream(lab: Lab, port: int) -> int:
    """1, 2 or 3: the ISP that carries the flow from local port ``port``."""
    for isp in ISPS:
        lab.isp_clear_probes(isp)
        lab.isp_probe(isp, f'iifname "r1" tcp sport {port} tcp dport 5001')
    lab.flows("c2", 1)  # give the stream time to send a few packets
    used = [k for k, isp in enumerate(ISPS, start=1) if lab.isp_probed(isp) > 0]
    assert len(used) == 1, used
    return used[0]


@contextmanager
def admin_masquerade(lab: Lab) -> Iterator[None]:
    """How the router forwarded before the collection: masquerade on every WAN."""
    rule = ["-t", "nat", "POSTROUTING", "-o", "wan+", "-j", "MASQUERADE"]
    lab.run("r1", ["iptables", rule[0], rule[1], "-A", *rule[2:]])
    try:
        yield
    finally:
        lab.run("r1", ["iptables", rule[0], rule[1], "-D", *rule[2:]])


@pytest.mark.parametrize("backend", BACKENDS)
def test_flow_that_existed_before_the_first_deploy_is_never_rechosen(router: Lab, backend: str) -> None:
    """A connection older than the ruleset has no mark: it is left on its path, never balanced
    mid-stream onto another ISP (which would drop it as spoofed)."""
    with admin_masquerade(router):
        spoofed = spoofed_total(router)
        with router.stream("c1", count=1, duration=3, interval=0.02) as stream:
            port = stream.local_ports[0]
            path = uplink_of_stream(router, port)
            # the choice never picks the stream's own ISP, so a re-choice would move it
            apply(router, base_params(router, backend), states={ISPS[path - 1]: "down"})
            router.flows("c1", 6)
        report = stream.reports[0]
    assert report["error"] is None and report["answered"] == report["sent"], report
    assert report["sources"] == [wan4(router)[path]]
    assert ct_marks(router, proto="tcp", sport=str(port)) == [0]
    assert spoofed_total(router) == spoofed


@pytest.mark.parametrize("backend", BACKENDS)
def test_mark_mask_change_leaves_existing_flows_marked_as_they_were(router: Lab, backend: str) -> None:
    """After mark_mask changes, a flow marked under the old mask is not re-chosen: its ct mark
    stays the old one (documented: it then follows the main table)."""
    apply(router, base_params(router, backend))
    with router.stream("c1", count=1, duration=2.5, interval=0.02) as stream:
        port = stream.local_ports[0]
        path = uplink_of_stream(router, port)
        old = ct_marks(router, proto="tcp", sport=str(port))
        assert old == [path << 8]
        moved = base_params(router, backend, mark_mask="0xff0000")
        for k, up in enumerate(moved["uplinks"], start=1):
            up["mark"] = hex(k << 16)
        apply(router, moved)
        router.flows("c2", 3)
        assert ct_marks(router, proto="tcp", sport=str(port)) == old


@pytest.mark.parametrize("backend", BACKENDS)
def test_renamed_uplink_with_the_same_mark_keeps_its_flows(router: Lab, backend: str) -> None:
    params = base_params(router, backend)
    apply(router, params, states={"isp1": "down", "isp3": "down"})  # new flows go to isp2
    spoofed = spoofed_total(router)
    with router.stream("c1", count=1, duration=2.5, interval=0.02) as stream:
        router.flows("c2", 2)
        renamed = base_params(router, backend)
        renamed["uplinks"][1]["name"] = "isp2b"
        apply(router, renamed, states={"isp2b": "down"})
        router.flows("c2", 6)
    report = stream.reports[0]
    assert report["error"] is None and report["answered"] == report["sent"], report
    assert report["sources"] == [wan4(router)[2]]
    assert spoofed_total(router) == spoofed


@pytest.mark.parametrize("backend", BACKENDS)
def test_ipv4_flows_are_never_chosen_for_an_uplink_without_ipv4(router: Lab, backend: str) -> None:
    """isp3 without NAT carries no LAN IPv4 (its ISP would drop 192.168.x as spoofed)."""
    params = base_params(router, backend)
    params["uplinks"][2]["nat"] = "none"
    apply(router, params)
    spoofed = spoofed_total(router)
    assert uplinks(router, router.flows("c1", 30)) == {"isp1": 20, "isp2": 10}
    assert spoofed_total(router) == spoofed


@pytest.mark.parametrize("backend", BACKENDS)
def test_ipv6_source_outside_every_prefix_is_left_unmarked(router: Lab, backend: str) -> None:
    """An IPv6 source no uplink translates or owns is never balanced (both backends alike):
    it follows the main table as it would without the collection."""
    params = base_params(router, backend)
    for up in params["uplinks"]:
        up.pop("nptv6", None)
    params["lans"] = [
        {"name": "lan1", "interfaces": ["lan1"],
         "prefixes": ["192.168.1.0/24", "2001:db8:101:1::/64", "2001:db8:201:1::/64"]},
        {"name": "lan2", "interfaces": ["lan2"], "prefixes": ["192.168.2.0/24"]},
    ]
    apply(router, params)
    router.flows("c1", 4, family=6, src=C1_ULA, timeout=0.5)
    marks = ct_marks(router, family=6, src=C1_ULA)
    assert len(marks) == 4 and all(m & 0xFF00 == 0 for m in marks), marks


def test_nft_marks_are_set_before_iptables_mangle_sees_the_packet(router: Lab) -> None:
    """Our prerouting chain has its own priority, before iptables' mangle (-150): an
    administrator's mangle rule sees every packet already marked, even when its chain was
    registered after ours (at an equal priority the later one would run first)."""
    apply(router, base_params(router, "nftables"))
    # iptables-nft's mangle table, re-created (and its hook registered) after ours below
    router.run("r1", ["nft", "delete", "table", "ip", "mangle"], check=False)
    counters = [["-i", "lan1", "-p", "tcp", "--dport", "5001"],
                ["-i", "lan1", "-p", "tcp", "--dport", "5001", "-m", "mark", "!", "--mark", "0x0/0xff00"]]
    for match in counters:
        router.run("r1", ["iptables", "-t", "mangle", "-A", "PREROUTING", *match])
    try:
        router.flows("c1", 10)
        save = router.run("r1", ["iptables-save", "-c", "-t", "mangle"]).stdout
        packets = [int(m.group(1)) for m in re.finditer(r"^\[(\d+):\d+\] -A PREROUTING -i lan1", save, re.M)]
        assert len(packets) == 2 and packets[0] > 0 and packets[1] == packets[0], save
    finally:
        router.run("r1", ["iptables", "-t", "mangle", "-F", "PREROUTING"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_source_hash_keeps_mark_bits_outside_the_mask(router: Lab, backend: str) -> None:
    """Bits the administrator set outside mark_mask survive the choice on the first packet."""
    syn = ["-i", "lan1", "-p", "tcp", "--syn"]
    router.run("r1", ["iptables", "-t", "raw", "-A", "PREROUTING", "-i", "lan1",
                      "-j", "MARK", "--set-xmark", "0x7/0xff"])
    for match in (syn, [*syn, "-m", "mark", "--mark", "0x7/0xff"]):
        router.run("r1", ["iptables", "-A", "FORWARD", *match])
    try:
        apply(router, base_params(router, backend, "source_hash"))
        router.flows("c1", 10)
        save = router.run("r1", ["iptables-save", "-c", "-t", "filter"]).stdout
        packets = [int(m.group(1)) for m in re.finditer(r"^\[(\d+):\d+\] -A FORWARD -i lan1", save, re.M)]
        assert len(packets) == 2 and packets[0] >= 10 and packets[1] == packets[0], save
    finally:
        router.run("r1", ["iptables", "-t", "raw", "-F", "PREROUTING"])
        router.run("r1", ["iptables", "-F", "FORWARD"])


FOREIGN_CHAINS = [("mangle", "MH_ADMIN"), ("nat", "MH_PORTS"), ("mangle", "MH_LAN")]


def test_iptables_backend_never_deletes_a_foreign_chain_named_like_its_own(router: Lab) -> None:
    for table, chain in FOREIGN_CHAINS:
        router.run("r1", ["iptables", "-t", table, "-N", chain])
        router.run("r1", ["iptables", "-t", table, "-A", chain, "-p", "udp", "--dport", "9", "-j", "RETURN"])
    try:
        params = base_params(router, "iptables")
        for step in (lambda: apply(router, params), lambda: apply(router, params, states={"isp1": "down"}),
                     lambda: apply(router, {"state": "absent", "backend": "iptables"})):
            step()
            for table, chain in FOREIGN_CHAINS:
                rules = router.run("r1", ["iptables", "-t", table, "-S", chain], check=False)
                assert rules.returncode == 0 and "--dport 9 -j RETURN" in rules.stdout, (chain, rules.stderr)
    finally:
        for table, chain in FOREIGN_CHAINS:
            router.run("r1", ["iptables", "-t", table, "-F", chain], check=False)
            router.run("r1", ["iptables", "-t", table, "-X", chain], check=False)


class FailingIpv6Commit(LabRunner):
    """r1's real ip6tables-restore, but the first real (not --test) load gets one line the
    kernel refuses: IPv4 has been committed by then, IPv6 fails; the rollback runs as is."""

    failed = False

    def run(self, argv: Sequence[str], stdin: Optional[str] = None, check: bool = True) -> CmdResult:
        if argv[0] == "ip6tables-restore" and "--test" not in argv and stdin and not self.failed:
            self.failed = True
            stdin += "*mangle\n-A NO_SUCH_CHAIN_ANYWHERE -j ACCEPT\nCOMMIT\n"
        return super().run(argv, stdin=stdin, check=check)


def test_iptables_failure_after_an_earlier_commit_rolls_the_earlier_one_back(router: Lab) -> None:
    params = base_params(router, "iptables")
    apply(router, params)
    before = {tool: router.run("r1", [tool]).stdout for tool in ("iptables-save", "ip6tables-save")}
    with pytest.raises(EngineError, match="rolled back") as failure:
        balance.apply_policy(params, FailingIpv6Commit(router), states={"isp1": "down"})
    assert "nothing changed" not in str(failure.value)
    for tool, text in before.items():
        assert _rules(router.run("r1", [tool]).stdout) == _rules(text), tool


def _rules(save: str) -> List[str]:
    return [ln for ln in save.splitlines() if not ln.startswith(("#", ":"))]


@pytest.mark.parametrize("backend", BACKENDS)
def test_nptv6_refuses_new_inbound_connections_to_translated_hosts_unless_opened(
    router: Lab, backend: str
) -> None:
    """NPTv6 maps every LAN host to a public address: by default only established/related
    traffic may enter through the translation; ``nptv6_inbound: any`` opens it."""
    apply(router, base_params(router, backend), states={"isp1": "down"})
    translated = "2001:db8:201:ff::10"  # c1 behind isp2's translation
    inet_side = router.plan["isps"]["isp2"]["inet6"].split("/")[0]
    with router.serve("c1", 5001):
        assert router.flows("inet", 2, dst=translated, timeout=0.5) == ["error:timeout"] * 2
        # the same host's own connections out (and their replies) still work
        assert router.flows("c1", 3, family=6, src=C1_ULA) == [translated] * 3
        apply(router, base_params(router, backend, nptv6_inbound="any"), states={"isp1": "down"})
        assert router.flows("inet", 2, dst=translated) == [inet_side] * 2
