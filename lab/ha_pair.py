"""The `ha_pair` topology: two routers sharing their LAN and ISP segments, a sync link.

Every segment a pair shares is a Linux bridge: the LAN's bridge lives in the client's
namespace, each ISP's bridge in the ISP's namespace (its gateway address sits on the
bridge, and the ports keep the routers' names so `set_carrier` cuts one router's cable).
Each ISP accepts the whole customer /29: both routers' real addresses and the virtual
address the pair NATs to. The routers' `sync0` ends form the dedicated state-sync link.
IPv4 only: the pair's virtual addresses are IPv4.
"""
from __future__ import annotations

from ipaddress import ip_interface
from typing import Dict, List

from addressing import Isp, Lan, Plan, Router, Uplink

BRIDGE = "br0"
SYNC_IF = "sync0"
SYNC_NET = "192.0.2.248/30"  # r1 .249, r2 .250
# ISP k's customer segment: 198.51.100.8(k-1)/29, gateway .1, virtual .2, router r .(2+r)
UPLINK_BASE = 8


def plan_ha_pair(name: str, topo: dict, isps: Dict[str, Isp]) -> Plan:
    routers: Dict[str, Router] = {}
    names = list(topo["routers"])
    if len(names) != 2:
        raise ValueError(f"topology {name!r}: an HA pair has exactly two routers, got {names}")
    lans = topo["routers"][names[0]]["lans"]
    ha: dict = {"sync": {}, "lans": {}, "uplinks": {}}
    for r, rname in enumerate(names, start=1):
        router = Router(name=rname, index=r)
        for isp_name in topo["routers"][rname]["uplinks"]:
            k = isps[isp_name].index
            base = UPLINK_BASE * (k - 1)
            router.uplinks.append(Uplink(
                router=rname, isp=isp_name, isp_index=k, router_if=f"wan{k}", isp_if=rname,
                address4=f"198.51.100.{base + 2 + r}/29", gateway4=f"198.51.100.{base + 1}",
                address6=f"2001:db8:f{k}:1::{2 + r}/64", gateway6=f"2001:db8:f{k}:1::1",
                delegated6=f"2001:db8:{k}0{r}::/48",
            ))
            ha["uplinks"][isp_name] = {"virtual4": f"198.51.100.{base + 2}/29",
                                       "network4": f"198.51.100.{base}/29"}
        for n in range(1, lans + 1):
            router.lans.append(Lan(
                router=rname, name=f"lan{n}", client=f"c{n}",
                router4=f"192.168.{n}.{1 + r}/24", client4=f"192.168.{n}.10/24",
                router6=[], client6=[],
            ))
            ha["lans"][f"lan{n}"] = {"virtual4": f"192.168.{n}.1/24", "client": f"c{n}"}
        ha["sync"][rname] = {"interface": SYNC_IF,
                             "address4": f"192.0.2.{248 + r}/30"}
        routers[rname] = router
    return Plan(name, topo.get("description", ""), isps, routers, ha=ha)


def antispoof_rules(plan: Plan, isp: str) -> List[str]:
    """The ISP accepts only its customer /29 from the pair's segment (mhlab's ISP table)."""
    net = plan.ha["uplinks"][isp]["network4"]
    return [f'    iifname "{BRIDGE}" ip saddr != {net} counter name spoofed drop',
            f'    iifname "{BRIDGE}" meta nfproto ipv6 counter name spoofed drop']


def link_routers(name: str, plan: Plan) -> None:
    """Bridge both routers into every shared segment and join them by the sync link."""
    import mhlab

    ns = mhlab.ns
    bridged = set()
    for router in plan.routers.values():
        n_r = ns(name, router.name)
        mhlab.sysctl(n_r, "net.ipv4.ip_forward", "0")
        segments = [(up.isp, up.isp_if, up.router_if, up.address4) for up in router.uplinks]
        segments += [(lan.client, router.name, lan.name, lan.router4) for lan in router.lans]
        for node, port, router_if, address in segments:
            n_seg = ns(name, node)
            if node not in bridged:
                mhlab.ipn(n_seg, "link", "add", BRIDGE, "type", "bridge")
                mhlab.ipn(n_seg, "link", "set", BRIDGE, "up")
                bridged.add(node)
            mhlab.veth(n_seg, port, n_r, router_if)
            mhlab.ipn(n_seg, "link", "set", port, "master", BRIDGE)
            mhlab.addr(n_r, router_if, address)
        for up in router.uplinks:
            mhlab.addr(n_r, up.router_if, up.address6)
        first = router.uplinks[0]
        mhlab.route(n_r, "default", "via", first.gateway4, "dev", first.router_if)
    for isp in plan.isps.values():
        up = next(u for u in plan.routers[next(iter(plan.routers))].uplinks if u.isp == isp.name)
        n_isp = ns(name, isp.name)
        mhlab.addr(n_isp, BRIDGE, f"{up.gateway4}/29")
        mhlab.addr(n_isp, BRIDGE, f"{up.gateway6}/64")
    for lan_name, lan in plan.ha["lans"].items():
        n_c = ns(name, lan["client"])
        client4 = next(x.client4 for x in next(iter(plan.routers.values())).lans if x.name == lan_name)
        mhlab.addr(n_c, BRIDGE, client4)
        mhlab.route(n_c, "default", "via", str(ip_interface(lan["virtual4"]).ip))
    (a, b), sync = plan.routers, plan.ha["sync"]
    mhlab.veth(ns(name, a), SYNC_IF, ns(name, b), SYNC_IF)
    for rname in (a, b):
        mhlab.addr(ns(name, rname), SYNC_IF, sync[rname]["address4"])


def set_segment(name: str, plan: Plan, router: str, up_: bool) -> None:
    """Cut (or restore) every cable of ROUTER at once: its ISP and LAN bridge ports and
    the sync link. The router's own processes keep running."""
    import mhlab

    state = "up" if up_ else "down"
    r = plan.routers[router]
    for up in r.uplinks:
        mhlab.ipn(mhlab.ns(name, up.isp), "link", "set", up.isp_if, state)
    for lan in r.lans:
        mhlab.ipn(mhlab.ns(name, lan.client), "link", "set", router, state)
    set_sync(name, router, up_)


def set_sync(name: str, router: str, up_: bool) -> None:
    import mhlab

    mhlab.ipn(mhlab.ns(name, router), "link", "set", SYNC_IF, "up" if up_ else "down")
