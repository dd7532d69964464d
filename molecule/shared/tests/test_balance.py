"""Real traffic through the scenario's lab: every router spreads new flows over both uplinks."""
from __future__ import annotations

import collections


def test_new_flows_from_each_router_lan_use_both_uplinks_nothing_spoofed(lab) -> None:
    spoofed = {isp: lab.spoofed(isp) for isp in ("isp1", "isp2")}
    for router in lab.plan["routers"]:
        seen = collections.Counter(lab.flows(lab.client_of("lan1", router), 20))
        expected = {lab.uplink_address(isp, router) for isp in ("isp1", "isp2")}
        assert set(seen) == expected and min(seen.values()) >= 5, (router, seen)
    assert {isp: lab.spoofed(isp) for isp in ("isp1", "isp2")} == spoofed
