"""Sixteen uplinks end to end on a real kernel: r1 of a sixteen-ISP lab, both backends.

Each flow's uplink is read from the source address the server saw; every ISP drops a
source that is not its own, so a flow sent out with another uplink's mark or NAT fails.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from harness import Lab
from test_conntrack_balance import BACKENDS, apply, playbook, uplink_tables

# a topology file (mhlab takes a path as well as a name in lab/topologies)
LAB_TOPOLOGY = str(Path(__file__).with_name("sixteen_isp.json"))
ISPS = [f"isp{k}" for k in range(1, 17)]


@pytest.fixture(scope="module")
def router(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Lab:
    tmp = tmp_path_factory.mktemp("sixteen")
    tables = uplink_tables(lab, ISPS, ipv6=False)
    playbook(lab, tmp, [{"netops.multihome.policy_route_table": "{{ item }}", "loop": tables}])
    lab.run("r1", ["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=2",
                   "net.ipv4.conf.all.src_valid_mark=1"])
    return lab


@pytest.fixture(autouse=True)
def clean_state(router: Lab):
    router.run("r1", ["conntrack", "-F"], check=False)
    yield
    for backend in BACKENDS:
        apply(router, {"state": "absent", "backend": backend})


def params(lab: Lab, backend: str) -> dict:
    return {
        "backend": backend,
        "mode": "round_robin",
        "uplinks": [{"name": isp, "interface": lab.uplink(isp)["router_if"], "mark": hex(k << 8)}
                    for k, isp in enumerate(ISPS, start=1)],
        "lans": [{"name": lan["name"], "interfaces": [lan["name"]],
                  "prefixes": [lan["client4"].rsplit(".", 1)[0] + ".0/24"]}
                 for lan in lab.router("r1")["lans"]],
    }


def used(lab: Lab, seen: list) -> Counter:
    isp_of = {lab.uplink_address(isp): isp for isp in ISPS}
    return Counter(isp_of.get(s, s) for s in seen)


def spoofed_total(lab: Lab) -> int:
    return sum(lab.spoofed(isp) for isp in ISPS)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sixteen_uplinks_each_take_an_equal_share_and_failover_moves_only_new_flows(
    router: Lab, backend: str
) -> None:
    c1, c2 = router.client_of("lan1"), router.client_of("lan2")
    p = params(router, backend)
    first = apply(router, p)
    assert first["changed"]
    assert apply(router, p)["changed"] is False  # the listing of sixteen of everything compares equal
    spoofed = spoofed_total(router)
    assert used(router, router.flows(c1, 160)) == {isp: 10 for isp in ISPS}
    with router.stream(c2, count=1, duration=2.5, interval=0.02) as stream:
        router.flows(c1, 4)
        small = apply(router, p, states={"isp5": "down", "isp12": "down"})
        assert all("choose" in c.lower() or "pins" in c.lower() for c in small["changes"]), small["changes"]
        after = used(router, router.flows(c1, 140))
    assert after == {isp: 10 for isp in ISPS if isp not in ("isp5", "isp12")}
    report = stream.reports[0]
    assert report["error"] is None and report["answered"] == report["sent"] and len(report["sources"]) == 1
    assert spoofed_total(router) == spoofed

