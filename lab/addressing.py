"""The lab's addressing plan: turns a topology file into nodes, links and addresses.

Pure functions, no side effects, so the plan is unit-testable and printable.
Only documentation and private ranges are used (RFC 5737, RFC 3849, RFC 1918, RFC 4193).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

TOPOLOGY_DIR = Path(__file__).resolve().parent / "topologies"
SERVER4 = ["203.0.113.10", "203.0.113.11", "203.0.113.12"]
SERVER6 = ["2001:db8:ffff::10", "2001:db8:ffff::11", "2001:db8:ffff::12"]
# Another site of the same organisation, behind inet but reached over a private link
# (a VPN stand-in): what a router's "bypass" sends without NAT and without an ISP.
SITE_NET4 = "203.0.113.128/25"
SITE4 = "203.0.113.130"
MAX_ISPS = 16
# Uplink /30s are numbered per router in blocks of at least 4 (so the hand-written
# inventories keep their addresses); 198.51.100.0/24 holds 64 of them.
MIN_STRIDE = 4
UPLINK_SUBNETS = 64


@dataclass
class Uplink:
    router: str
    isp: str
    isp_index: int
    router_if: str  # on the router: wan<k>
    isp_if: str  # on the ISP: the router's name
    address4: str
    gateway4: str
    address6: str
    gateway6: str
    delegated6: str  # the /48 the ISP routes to this customer


@dataclass
class Lan:
    router: str
    name: str  # interface on the router: lan<n>
    client: str
    router4: str
    client4: str
    router6: List[str]
    client6: List[str]


@dataclass
class SiteLink:
    router: str
    router_if: str  # on the router: site0; inet's end is named after the router
    address4: str
    gateway4: str  # inet's end
    destinations4: str  # the site's prefix, routed over this link


@dataclass
class Router:
    name: str
    index: int
    uplinks: List[Uplink] = field(default_factory=list)
    lans: List[Lan] = field(default_factory=list)
    site: Optional[SiteLink] = None


@dataclass
class Isp:
    name: str
    index: int
    upstream4: str  # ISP side of the ISP<->inet link
    inet4: str  # inet side
    upstream6: str
    inet6: str


@dataclass
class Plan:
    topology: str
    description: str
    isps: Dict[str, Isp]
    routers: Dict[str, Router]
    ha: Optional[dict] = None  # the ha_pair topology's shared segments (lab/ha_pair.py)

    @property
    def clients(self) -> List[Lan]:
        """One LAN per client (an HA pair's routers share their LANs' clients)."""
        seen: Dict[str, Lan] = {}
        for lan in (lan for r in self.routers.values() for lan in r.lans):
            seen.setdefault(lan.client, lan)
        return list(seen.values())

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


def is_topology_file(name: str) -> bool:
    """A topology given as a file path (generated ones) rather than a name in topologies/."""
    return name.endswith(".json") or "/" in name


def load_topology(name: str) -> dict:
    if is_topology_file(name):
        if not Path(name).is_file():
            raise ValueError(f"topology file {name!r} does not exist")
        return json.loads(Path(name).read_text())
    path = TOPOLOGY_DIR / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in TOPOLOGY_DIR.glob("*.json"))
        raise ValueError(f"unknown topology {name!r}; known: {', '.join(known)}")
    return json.loads(path.read_text())


def build_plan(name: str) -> Plan:
    topo = load_topology(name)
    isps: Dict[str, Isp] = {}
    for k, isp in enumerate(topo["isps"], start=1):
        if k > MAX_ISPS:
            raise ValueError(f"at most {MAX_ISPS} ISPs are supported, got {len(topo['isps'])}")
        base = 4 * (k - 1)
        isps[isp] = Isp(
            name=isp,
            index=k,
            upstream4=f"192.0.2.{base + 1}/30",
            inet4=f"192.0.2.{base + 2}/30",
            upstream6=f"2001:db8:ff{k:02x}::1/64",
            inet6=f"2001:db8:ff{k:02x}::2/64",
        )
    stride = max(MIN_STRIDE, len(isps))
    if stride * len(topo["routers"]) > UPLINK_SUBNETS:
        raise ValueError(
            f"{len(topo['routers'])} routers x {stride} uplink subnets exceed the {UPLINK_SUBNETS} /30s "
            "of 198.51.100.0/24"
        )
    if topo.get("ha_pair"):
        from ha_pair import plan_ha_pair

        return plan_ha_pair(name, topo, isps)
    routers: Dict[str, Router] = {}
    client_no = 0
    for r, (rname, rdef) in enumerate(topo["routers"].items(), start=1):
        router = Router(name=rname, index=r)
        for isp_name in rdef["uplinks"]:
            k = isps[isp_name].index
            link = (r - 1) * stride + (k - 1)
            router.uplinks.append(
                Uplink(
                    router=rname,
                    isp=isp_name,
                    isp_index=k,
                    router_if=f"wan{k}",
                    isp_if=rname,
                    address4=f"198.51.100.{4 * link + 2}/30",
                    gateway4=f"198.51.100.{4 * link + 1}",
                    address6=f"2001:db8:f{k}:{r}::2/64",
                    gateway6=f"2001:db8:f{k}:{r}::1",
                    delegated6=f"2001:db8:{k}0{r}::/48",
                )
            )
        for n in range(1, rdef["lans"] + 1):
            client_no += 1
            third = 10 * (r - 1) + n
            prefixes6 = [f"fd00:0:{r}:{n}::"] + [
                f"2001:db8:{u.isp_index}0{r}:{n}::" for u in router.uplinks
            ]
            router.lans.append(
                Lan(
                    router=rname,
                    name=f"lan{n}",
                    client=f"c{client_no}",
                    router4=f"192.168.{third}.1/24",
                    client4=f"192.168.{third}.10/24",
                    router6=[f"{p}1/64" for p in prefixes6],
                    client6=[f"{p}10/64" for p in prefixes6],
                )
            )
        if rdef.get("site_link"):
            base = 64 + 4 * (r - 1)
            router.site = SiteLink(
                router=rname,
                router_if="site0",
                address4=f"192.0.2.{base + 1}/30",
                gateway4=f"192.0.2.{base + 2}",
                destinations4=SITE_NET4,
            )
        routers[rname] = router
    return Plan(name, topo.get("description", ""), isps, routers)
