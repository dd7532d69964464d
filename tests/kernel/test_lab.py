"""The lab itself: the plain router's reachability, anti-spoofing, the harness's helpers."""
from __future__ import annotations

import json
import time

import pytest
from harness import SERVER4, SERVER6, Lab


def test_router_reaches_internet_via_isp1_only_from_its_own_address(lab: Lab) -> None:
    assert lab.flows("r1", 2) == ["198.51.100.2"] * 2
    assert lab.flows("r1", 1, family=6) == ["2001:db8:f1:1::2"]
    assert lab.flows("r1", 2, proto="udp") == ["198.51.100.2"] * 2


def test_plain_router_does_not_forward(lab: Lab) -> None:
    assert lab.run("r1", ["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip() == "0"
    before = lab.spoofed("isp1")
    assert lab.flows("c1", 1, timeout=1) == ["error:timeout"]
    assert lab.flows("c1", 1, dst="192.168.2.10", timeout=1) == ["error:timeout"]
    assert lab.spoofed("isp1") == before, "nothing should even reach the ISP"


def test_lan_traffic_without_nat_is_dropped_by_the_isp_as_spoofed(lab: Lab) -> None:
    lab.run("r1", ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    try:
        before = lab.spoofed("isp1")
        assert lab.flows("c1", 3, timeout=1) == ["error:timeout"] * 3
        # Each flow's SYN (and its retransmissions) left via isp1 and was dropped there.
        assert lab.spoofed("isp1") >= before + 3
        assert lab.spoofed("isp2") == 0
        # LAN to LAN is plain forwarding: it works and is not NATed.
        assert lab.run("c1", ["ping", "-c1", "-W2", "192.168.2.10"], check=False).returncode == 0
    finally:
        lab.run("r1", ["sysctl", "-qw", "net.ipv4.ip_forward=0"])


@pytest.mark.parametrize("isp,other", [("isp1", "isp2"), ("isp2", "isp1")])
def test_each_isp_drops_and_counts_the_other_isps_addresses(lab: Lab, isp: str, other: str) -> None:
    """The router sends through ISP with OTHER's IPv4 address and from OTHER's delegated IPv6
    prefix (r1's lan1 address in it): ISP drops both and counts them; OTHER sees nothing."""
    up = lab.uplink(isp)
    # Host routes to the servers via ISP's gateway: only this test's flows take ISP.
    routes = [["-4", f"{SERVER4}/32", "via", up["gateway4"], "dev", up["router_if"]],
              ["-6", f"{SERVER6}/128", "via", up["gateway6"], "dev", up["router_if"]]]
    for family, *route in routes:
        lab.run("r1", ["ip", family, "route", "add", *route])
    try:
        for name in (isp, other):
            lab.reset_spoofed(name)
        own6, foreign6 = (lab.uplink(name)["delegated6"].replace("::/48", ":1::1") for name in (isp, other))
        assert lab.flows("r1", 1, src=lab.uplink_address(isp)) == [lab.uplink_address(isp)]
        assert lab.flows("r1", 1, family=6, src=own6) == [own6]
        assert lab.flows("r1", 1, src=lab.uplink_address(other), timeout=1) == ["error:timeout"]
        assert lab.flows("r1", 1, family=6, src=foreign6, timeout=1) == ["error:timeout"]
        assert lab.spoofed(isp) >= 2
        assert lab.spoofed(other) == 0
    finally:
        for family, *route in routes:
            lab.run("r1", ["ip", family, "route", "del", *route], check=False)


def test_flow_results_match_the_servers_own_log(lab: Lab) -> None:
    before = len(lab.server_log())
    seen = lab.flows("r1", 25)
    log = lab.server_log()[before:]
    assert len(log) == 25
    assert [entry[1] for entry in log] == seen


def test_ssh_to_router_and_its_etc_stays_inside(lab: Lab) -> None:
    out = lab.ssh("r1", "hostname && mkdir -p /etc/iproute2/rt_tables.d && "
                        "echo '200 labprobe' > /etc/iproute2/rt_tables.d/labprobe.conf && "
                        "touch /var/lib/labprobe /usr/local/labprobe /run/labprobe && echo done")
    assert out.stdout.split() == ["r1", "done"]
    for path in ("/etc/iproute2/rt_tables.d/labprobe.conf", "/var/lib/labprobe",
                 "/usr/local/labprobe", "/run/labprobe"):
        assert lab.run("r1", ["test", "-e", path], check=False).returncode == 0
        assert lab.run("c1", ["test", "-e", path], check=False).returncode == 1, path


def test_stream_reports_stall_when_the_upstream_is_cut(lab: Lab) -> None:
    with lab.stream("r1", count=2, duration=4, interval=0.05) as s:
        time.sleep(1)
        lab.cut_upstream("isp1")
        time.sleep(1.5)
        lab.restore_upstream("isp1")
    for rep in s.reports:
        assert rep["sources"] == ["198.51.100.2"]
        assert rep["error"] is None
        assert 1.2 <= rep["max_gap"] < 3.5, rep


def test_stream_without_faults_has_no_stall(lab: Lab) -> None:
    with lab.stream("r1", count=2, duration=2, proto="udp", interval=0.02) as s:
        pass
    for rep in s.reports:
        assert rep["sources"] == ["198.51.100.2"]
        assert rep["max_gap"] < 0.5
        assert rep["answered"] >= rep["sent"] * 0.95


def test_isp_drops_a_share_of_syns(lab: Lab) -> None:
    lab.isp_drop("isp1", 100, syn_only=True)
    try:
        assert lab.flows("r1", 2, timeout=0.5) == ["error:timeout"] * 2
        # Only SYNs are dropped: a UDP flow still passes.
        assert lab.flows("r1", 1, proto="udp") == ["198.51.100.2"]
    finally:
        lab.isp_clear_faults("isp1")
    lab.isp_drop("isp1", 50, syn_only=True)
    try:
        out = lab.run("isp1", ["nft", "-j", "list", "chain", "inet", "lab", "faults"]).stdout
        lab.flows("r1", 20, timeout=3)
        out = lab.run("isp1", ["nft", "-j", "list", "chain", "inet", "lab", "faults"]).stdout
        counters = [e["counter"]["packets"] for item in json.loads(out)["nftables"]
                    if "rule" in item for e in item["rule"]["expr"] if "counter" in e]
        assert 3 <= counters[0] <= 40
    finally:
        lab.isp_clear_faults("isp1")


def test_carrier_loss_is_seen_by_the_router(lab: Lab) -> None:
    lab.carrier_down("isp2")
    try:
        link = json.loads(lab.run("r1", ["ip", "-j", "link", "show", "wan2"]).stdout)[0]
        assert "NO-CARRIER" in link["flags"]
    finally:
        lab.carrier_up("isp2")
    link = json.loads(lab.run("r1", ["ip", "-j", "link", "show", "wan2"]).stdout)[0]
    assert "LOWER_UP" in link["flags"]


def test_servers_answer_on_ipv6_over_udp_and_tcp_and_log_the_source(lab: Lab) -> None:
    before = len(lab.server_log())
    assert lab.flows("r1", 1, proto="udp", family=6) == ["2001:db8:f1:1::2"]
    assert lab.flows("r1", 1, proto="tcp", family=6) == ["2001:db8:f1:1::2"]
    assert [entry[:2] for entry in lab.server_log()[before:]] == [["udp", "2001:db8:f1:1::2"],
                                                                  ["tcp", "2001:db8:f1:1::2"]]
