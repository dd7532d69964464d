"""The lab's addressing plan: unique, documentation-range, consistent across topologies."""
from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "lab"))
from addressing import build_plan


@pytest.mark.parametrize("topology", ["default", "three_isp", "two_routers"])
def test_addresses_are_unique_and_gateways_share_the_link(topology: str) -> None:
    plan = build_plan(topology)
    seen = []
    for router in plan.routers.values():
        for up in router.uplinks:
            for cidr, gw in ((up.address4, up.gateway4), (up.address6, up.gateway6)):
                iface = ipaddress.ip_interface(cidr)
                assert ipaddress.ip_address(gw) in iface.network
                assert iface.ip != ipaddress.ip_address(gw)
                seen.append(iface.ip)
            assert ipaddress.ip_network(up.delegated6).prefixlen == 48
        for lan in router.lans:
            seen += [ipaddress.ip_interface(a).ip for a in [lan.router4, lan.client4, *lan.router6]]
    assert len(seen) == len(set(seen))


def test_default_topology_is_the_articles_scenario() -> None:
    plan = build_plan("default")
    r1 = plan.routers["r1"]
    assert [(u.router_if, u.address4, u.gateway4) for u in r1.uplinks] == [
        ("wan1", "198.51.100.2/30", "198.51.100.1"),
        ("wan2", "198.51.100.6/30", "198.51.100.5"),
    ]
    assert [(lan.name, lan.client, lan.router4) for lan in r1.lans] == [
        ("lan1", "c1", "192.168.1.1/24"),
        ("lan2", "c2", "192.168.2.1/24"),
    ]
    # Each LAN carries a ULA prefix and one delegated prefix per ISP.
    assert r1.lans[0].client6 == ["fd00:0:1:1::10/64", "2001:db8:101:1::10/64", "2001:db8:201:1::10/64"]


def test_two_routers_have_disjoint_lans_and_links() -> None:
    plan = build_plan("two_routers")
    r1, r2 = plan.routers["r1"], plan.routers["r2"]
    nets1 = {ipaddress.ip_interface(x.router4).network for x in r1.lans}
    nets2 = {ipaddress.ip_interface(x.router4).network for x in r2.lans}
    assert not nets1 & nets2
    assert r2.uplinks[0].address4 == "198.51.100.18/30"
    assert [lan.client for lan in r2.lans] == ["c3", "c4"]


def test_unknown_topology_names_the_known_ones() -> None:
    known = "default, ha_pair, systemd, three_isp, two_routers"
    with pytest.raises(ValueError, match=f"unknown topology 'x'; known: {known}"):
        build_plan("x")


def test_site_link_only_where_the_topology_asks_for_it() -> None:
    assert build_plan("default").routers["r1"].site is None
    site = build_plan("three_isp").routers["r1"].site
    assert site is not None
    assert (site.router_if, site.address4, site.gateway4) == ("site0", "192.0.2.65/30", "192.0.2.66")
    # the site's prefix and the link are disjoint from every ISP backbone link (192.0.2.0/28)
    link = ipaddress.ip_interface(site.address4).network
    assert not link.overlaps(ipaddress.ip_network("192.0.2.0/28"))
    assert ipaddress.ip_address("203.0.113.130") in ipaddress.ip_network(site.destinations4)
