"""An uplink table learned from the kernel, for uplinks whose address is not static
(``addressing: dhcp`` or ``dynamic``: DHCP clients, PPPoE, LTE, networkd, NetworkManager).

From the interface's current global addresses and the default route its DHCP client
(or router advertisements) installed, in ``main`` or any table but ours, this derives
what a static uplink lists by hand: the connected route (or, on a point-to-point link,
the route to the peer), the default route via the gateway (the peer when the link is
point-to-point and nobody installed a default; an IPv6 link-local gateway as the RA
gave it) and the rule for the address as source. Nothing found: nothing added (the
uplink has no address yet; the monitor re-applies when the kernel reports one).
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
from typing import Any

from ..errors import EngineError
from ..model.table_spec import TableSpec
from ..runner import Runner
from .iproute import DEFAULT_METRIC, Route, Rule


def _json(runner: Runner, argv: list[str]) -> list[dict[str, Any]]:
    res = runner.run(argv, check=False)
    if res.rc != 0:
        return []
    try:
        data = json.loads(res.stdout or "[]")
    except ValueError as exc:
        raise EngineError(f"cannot parse {' '.join(argv)}: {exc}") from exc
    return data if isinstance(data, list) else []


def interface_addresses(runner: Runner, dev: str, family: int) -> list[tuple[str, int, str | None]]:
    """(address, prefix length, point-to-point peer or None) of DEV's global addresses."""
    out = []
    for link in _json(runner, ["ip", "-j", f"-{family}", "address", "show", "dev", dev, "scope", "global"]):
        for info in link.get("addr_info") or []:
            if "local" not in info or info.get("tentative"):
                continue
            peer = info.get("address") if info.get("address") not in (None, info["local"]) else None
            out.append((info["local"], int(info["prefixlen"]), peer))
    return out


def learned_gateway(runner: Runner, dev: str, family: int, own_table: int | None) -> str | None:
    """The gateway of the best default route through DEV that someone else installed."""
    found = []
    argv = ["ip", "-j", f"-{family}", "route", "show", "table", "all", "default", "dev", dev]
    for obj in _json(runner, argv):
        table = str(obj.get("table", "main"))
        if obj.get("gateway") and table not in (str(own_table), "local"):
            found.append((int(obj.get("metric", 0)), obj["gateway"]))
    return min(found)[1] if found else None


def with_learned(spec: TableSpec, runner: Runner) -> TableSpec:
    """SPEC plus the routes and source rules learned from ``spec.learn_from`` now."""
    dev = spec.learn_from
    if dev is None or spec.state != "present":
        return spec
    routes = list(spec.routes)
    rules = list(spec.rules)
    for fam in (4, 6):
        addresses = interface_addresses(runner, dev, fam)
        if not addresses:
            continue
        gateway = learned_gateway(runner, dev, fam, spec.table_id)
        metric = DEFAULT_METRIC[fam]
        onlink = False
        for local, length, peer in addresses:
            if peer is not None:
                routes.append(Route(fam, str(ipaddress.ip_network(peer, strict=False)), dev=dev, src=local,
                                    metric=metric))
                gateway = gateway or peer.split("/")[0]
                onlink = True
            else:
                net = ipaddress.ip_interface(f"{local}/{length}").network
                routes.append(Route(fam, str(net), dev=dev, src=local, metric=metric))
            if spec.learn_priority is not None and spec.table_id is not None:
                host = 32 if fam == 4 else 128
                rules.append(Rule(fam, spec.learn_priority, spec.table_id, src=f"{local}/{host}"))
        if gateway is not None:
            outside = not any(ipaddress.ip_address(gateway) in ipaddress.ip_interface(f"{a}/{n}").network
                              for a, n, _p in addresses)
            link_local = ipaddress.ip_address(gateway).is_link_local
            routes.append(Route(fam, "default", gateway=gateway, dev=dev, metric=metric,
                                onlink=onlink and outside and not link_local))
    return dataclasses.replace(spec, routes=tuple(dict.fromkeys(routes)), rules=tuple(dict.fromkeys(rules)),
                               families=tuple(sorted(set(spec.families) | {r.family for r in routes})))
