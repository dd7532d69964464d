"""Uplinks whose address is not static, on the lab's r1 (three ISPs) converged by
playbooks/site.yml (issue 12): isp2 leases its address by DHCP, isp3 is a point-to-point
/32 with a peer gateway (see harness/uplinks.py). One lab and one converge; the ISP
renumbers the DHCP uplink, the point-to-point interface is deleted and re-created with a
new address, and new LAN flows follow while flows on the other uplinks never stall.
"""
from __future__ import annotations

import collections
import time

import pytest
from harness import first_via, wait_for
from harness.uplinks import (
    DHCP_FIRST,
    DHCP_GW_FIRST,
    DHCP_GW_NEXT,
    DHCP_NEXT,
    ISP1,
    P2P,
    converge_dynamic,
    p2p_link,
    statuses,
)

LAB_TOPOLOGY = "three_isp"


def sources(lab, n: int = 30) -> collections.Counter:
    return collections.Counter(lab.flows("c1", n) + lab.flows("c2", n))


@pytest.fixture(scope="module")
def dynamic(lab):
    dhcp = converge_dynamic(lab)
    yield lab, dhcp
    dhcp.stop()


def test_dhcp_and_point_to_point_uplinks_carry_flows_with_their_learned_addresses(dynamic) -> None:
    lab, _dhcp = dynamic
    seen = sources(lab)
    assert seen[ISP1] > 0 and seen[DHCP_FIRST] > 0 and seen[P2P[0][0]] > 0, seen
    table = lab.run("r1", ["ip", "route", "show", "table", "mh_isp3"]).stdout
    assert f"default via {P2P[0][1]} dev wan3 onlink" in table, table


def test_dhcp_renumber_moves_new_flows_to_the_new_source_and_other_streams_never_stall(dynamic) -> None:
    lab, dhcp = dynamic
    dhcp.serve(DHCP_NEXT, DHCP_GW_NEXT, 24)
    with lab.stream("c1", count=6, duration=10) as streams, lab.probing("c2", 8) as probe:
        time.sleep(1)
        dhcp.renumber()
        assert wait_for(lambda: dhcp.lease_times(DHCP_NEXT), 5), "no new lease"
    lease = dhcp.lease_times(DHCP_NEXT)[0] - time.time() + time.monotonic()
    assert first_via(probe.flows, DHCP_NEXT, lease) is not None, probe.flows[-20:]
    others = [r for r in streams.reports if set(r["sources"]) <= {ISP1, P2P[0][0]}]
    assert others and all(r["max_gap"] < 1.0 and not r.get("error") for r in others), streams.reports
    table = lab.run("r1", ["ip", "route", "show", "table", "mh_isp2"]).stdout
    assert f"default via {DHCP_GW_NEXT} dev wan2" in table and DHCP_GW_FIRST not in table, table


def test_point_to_point_interface_recreated_with_a_new_address_carries_new_flows(dynamic) -> None:
    lab, _dhcp = dynamic
    with lab.stream("c1", count=6, duration=10) as streams, lab.probing("c2", 8) as probe:
        time.sleep(1)
        p2p_link(lab, *P2P[1])
        created = time.monotonic()
    assert first_via(probe.flows, P2P[1][0], created) is not None, probe.flows[-20:]
    others = [r for r in streams.reports if set(r["sources"]) <= {ISP1}]
    assert all(r["max_gap"] < 1.0 and not r.get("error") for r in others), streams.reports
    assert statuses(lab)["isp3"] == "up"
