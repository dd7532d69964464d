"""The ha_pair topology's plan: shared segments, virtual addresses inside the ISPs' ranges."""
from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "lab"))
from addressing import build_plan


def test_both_routers_share_each_isp_segment_with_the_virtual_address_inside_it() -> None:
    plan = build_plan("ha_pair")
    for isp, ha in plan.ha["uplinks"].items():
        net = ipaddress.ip_network(ha["network4"])
        addresses = [next(u.address4 for u in r.uplinks if u.isp == isp) for r in plan.routers.values()]
        assert {ipaddress.ip_interface(a).network for a in addresses} == {net}
        assert ipaddress.ip_interface(ha["virtual4"]).ip in net
        assert ha["virtual4"] not in addresses


def test_both_routers_share_one_lan_and_its_client() -> None:
    plan = build_plan("ha_pair")
    r1, r2 = plan.routers["r1"], plan.routers["r2"]
    assert [lan.client for lan in r1.lans] == [lan.client for lan in r2.lans] == ["c1"]
    assert [lan.client for lan in plan.clients] == ["c1"]
    assert r1.lans[0].router4 != r2.lans[0].router4
    assert plan.ha["lans"]["lan1"]["virtual4"] == "192.168.1.1/24"


def test_sync_link_is_one_subnet_with_an_address_per_router() -> None:
    sync = build_plan("ha_pair").ha["sync"]
    nets = {ipaddress.ip_interface(s["address4"]).network for s in sync.values()}
    assert len(nets) == 1 and len({s["address4"] for s in sync.values()}) == 2
