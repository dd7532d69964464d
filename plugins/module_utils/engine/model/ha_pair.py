"""High availability: validate a VRRP pair and derive its settings (controller side, pure).

``pair_settings`` checks one router's ``multihome_ha`` against its own model and against
its peer's variables and model: both routers must agree on marks, table ids, LANs,
uplinks, virtual addresses and VRRP settings, or validation fails naming the variable,
both routers and both values, before either router changes. ``with_ha`` folds the
result into the router model: the uplinks NAT to their virtual addresses and the
``ha`` section feeds the keepalived/conntrackd templates, the transition script and
``multihome status``.
"""
from __future__ import annotations

import ipaddress
from typing import Any, Dict, List, Optional

from ..errors import ValidationError

HA = "multihome_ha"
VERSIONS = (2, 3)
# Mid-stream TCP packets without a conntrack entry are not picked up as new flows: on a
# new master, a packet that arrives before `conntrackd -c` has committed its flow would
# otherwise get a fresh mark and NAT binding and the committed entry would clash.
SYSCTL = {"net/netfilter/nf_conntrack_tcp_loose": "0"}


def _int(option: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(option, value, f"an integer from {low} to {high}")
    return value


def _host_address(option: str, value: Any, network: Optional[Any] = None) -> ipaddress.IPv4Interface:
    allowed = "an IPv4 address with its prefix length, such as 192.168.1.1/24"
    if network is not None:
        example = f"{next(network.hosts())}/{network.prefixlen}"
        allowed = f"an IPv4 address/prefix inside {network}, such as {example}"
    try:
        iface = ipaddress.IPv4Interface(str(value)) if "/" in str(value) else None
    except ValueError:
        iface = None
    if iface is None or iface.ip in (iface.network.network_address, iface.network.broadcast_address):
        raise ValidationError(option, value, allowed)
    if network is not None and iface.network != network:
        raise ValidationError(option, value, allowed)
    return iface


def _instances(kind: str, raw: Any, wanted: Dict[str, Any]) -> List[Dict[str, Any]]:
    """One VRRP instance per LAN (kind "lans") or uplink ("uplinks") of the model."""
    option = f"{HA}.{kind}"
    if not isinstance(raw, list) or not all(isinstance(x, dict) for x in raw):
        raise ValidationError(option, raw, "a list of {name, virtual_address, vrid}, one per " + kind[:-1])
    names = [x.get("name") for x in raw]
    for i, name in enumerate(names):
        if name not in wanted:
            raise ValidationError(f"{option}[{i}].name", name, "one of " + ", ".join(sorted(wanted)))
        if names.index(name) != i:
            raise ValidationError(f"{option}[{i}].name", name, f"a {kind[:-1]} not already listed")
    missing = sorted(set(wanted) - set(names))
    if missing:
        allowed = f"every {kind[:-1]} of the router; missing: {', '.join(missing)}"
        raise ValidationError(option, names, allowed)
    out = []
    for i, item in enumerate(raw):
        network = wanted[item["name"]]["network"]
        vip = _host_address(f"{option}[{i}].virtual_address", item.get("virtual_address"), network)
        out.append({"name": item["name"], "interface": wanted[item["name"]]["interface"],
                    "virtual_address": str(vip),
                    "vrid": _int(f"{option}[{i}].vrid", item.get("vrid"), 1, 255),
                    "real_address": wanted[item["name"]].get("real")})
    return out


def _own_networks(model: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """LANs and uplinks of the model: name -> interface, IPv4 network (and real address)."""
    lans: Dict[str, Any] = {}
    for lan in model["balance"]["lans"]:
        v4 = [ipaddress.ip_network(p) for p in lan["prefixes"] if ":" not in p]
        lans[lan["name"]] = {"interface": lan["interfaces"][0], "network": v4[0] if v4 else None}
    uplinks: Dict[str, Any] = {}
    for name, up in model["failover"]["uplinks"].items():
        routing = next(t for t in model["routing"] if t["id"] == up["table"])
        net = next((ipaddress.ip_network(r["dest"]) for r in routing["routes"]
                    if r["dest"] != "default" and ":" not in r["dest"]), None)
        uplinks[name] = {"interface": up["interface"], "network": net, "real": up["source"]}
    return {"lans": lans, "uplinks": uplinks}


def own_settings(model: Dict[str, Any], ha: Dict[str, Any], host: str) -> Dict[str, Any]:
    """Validate one router's multihome_ha against its own model (no peer needed)."""
    if not isinstance(ha, dict):
        raise ValidationError(HA, ha, "a dictionary (see roles/multihome/README.md)")
    peer = ha.get("peer")
    if not isinstance(peer, str) or not peer or peer == host:
        raise ValidationError(f"{HA}.peer", peer,
                              f"the inventory name of the other router of the pair (not {host})")
    version = ha.get("vrrp_version", 3)
    if version not in VERSIONS:
        raise ValidationError(f"{HA}.vrrp_version", version, "2 or 3")
    interval = ha.get("advert_interval", 0.3 if version == 3 else 1)
    whole = version == 2
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or (
        whole and (interval != int(interval) or not 1 <= interval <= 255)
    ) or not 0.01 <= interval <= 40.95:
        allowed = "whole seconds 1-255 with vrrp_version 2" if whole else "seconds, 0.01 to 40.95"
        raise ValidationError(f"{HA}.advert_interval", interval, allowed)
    auth = ha.get("auth_pass")
    if auth is not None and (version != 2 or not isinstance(auth, str) or not 1 <= len(auth) <= 8):
        raise ValidationError(f"{HA}.auth_pass", "<hidden>" if isinstance(auth, str) else auth,
                              "1-8 characters, and only with vrrp_version 2 (VRRPv3 has no authentication)")
    preempt = ha.get("preempt", False)
    if not isinstance(preempt, bool):
        raise ValidationError(f"{HA}.preempt", preempt, "true or false")
    preempt_delay = _int(f"{HA}.preempt_delay", ha.get("preempt_delay", 5), 0, 1000)
    nets = _own_networks(model)
    for name, lan in nets["lans"].items():
        if lan["network"] is None:
            raise ValidationError(f"{HA}.lans", name,
                                  "LANs with an IPv4 prefix (the pair's gateways are IPv4)")
    for up in model["balance"]["uplinks"]:
        if up["nat"] != "snat":
            raise ValidationError(f"multihome_uplinks ({up['name']}).nat", up["nat"],
                                  "snat: an HA pair NATs to the uplink's virtual address")
    lans = _instances("lans", ha.get("lans"), nets["lans"])
    uplinks = _instances("uplinks", ha.get("uplinks"), nets["uplinks"])
    for i, item in enumerate(uplinks):
        if str(ipaddress.ip_interface(item["virtual_address"]).ip) == item["real_address"]:
            raise ValidationError(f"{HA}.uplinks[{i}].virtual_address", item["virtual_address"],
                                  f"an address other than this router's own {item['real_address']}")
    sync_if = ha.get("sync_interface")
    used = {i["interface"] for i in lans + uplinks}
    if not isinstance(sync_if, str) or not sync_if or sync_if in used:
        raise ValidationError(f"{HA}.sync_interface", sync_if,
                              "a dedicated interface for state sync, none of the LAN or uplink interfaces")
    sync = _host_address(f"{HA}.sync_address", ha.get("sync_address"))
    return {
        "peer": peer, "priority": _int(f"{HA}.priority", ha.get("priority"), 1, 254),
        "preempt": preempt, "preempt_delay": preempt_delay, "vrrp_version": version,
        "advert_interval": interval, "auth_pass": auth, "sync_interface": sync_if, "sync_address": str(sync),
        "lans": lans, "uplinks": uplinks,
    }


def _agree(option: str, host: str, mine: Any, peer: str, theirs: Any) -> None:
    if mine != theirs:
        raise ValidationError(option, {host: mine, peer: theirs},
                              "the same value on both routers of an HA pair")


def _public(settings: Dict[str, Any]) -> Dict[str, Any]:
    return {kind: {i["name"]: (i["virtual_address"], i["vrid"]) for i in settings[kind]}
            for kind in ("lans", "uplinks")}


def pair_settings(model: Dict[str, Any], ha: Dict[str, Any], host: str,
                  peer_model: Optional[Dict[str, Any]], peer_ha: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """Validate both routers of the pair from HOST's side; return HOST's HA settings."""
    mine = own_settings(model, ha, host)
    peer = mine["peer"]
    if not peer_ha:
        raise ValidationError(f"{HA}.peer", peer, f"a router that has {HA} too: {peer} has none, "
                              f"or is not in this play (run both routers of a pair together)")
    if peer_model is None:
        raise ValidationError(f"{HA}.peer", peer, f"a router of this play: {peer} is not in it "
                              "(run both routers of a pair together)")
    try:
        theirs = own_settings(peer_model, peer_ha, peer)
    except ValidationError as exc:
        raise ValidationError(f"{exc.option} (on {peer})", exc.value, exc.allowed) from None
    _agree(f"{HA}.peer", host, host, peer, theirs["peer"])
    ups, peer_ups = model["failover"]["uplinks"], peer_model["failover"]["uplinks"]
    _agree("multihome_uplinks (names)", host, sorted(ups), peer, sorted(peer_ups))
    for name in sorted(ups):
        for key, label in (("mark", "mark"), ("table", "table")):
            _agree(f"multihome_uplinks ({name}).{label}", host, ups[name][key], peer, peer_ups[name][key])
    _agree("multihome_mark_mask", host, model["balance"]["mark_mask"],
           peer, peer_model["balance"]["mark_mask"])
    lans = {lan["name"]: sorted(lan["prefixes"]) for lan in model["balance"]["lans"]}
    peer_lans = {lan["name"]: sorted(lan["prefixes"]) for lan in peer_model["balance"]["lans"]}
    _agree("multihome_lans (names and prefixes)", host, lans, peer, peer_lans)
    mine_pub, their_pub = _public(mine), _public(theirs)
    for kind in ("lans", "uplinks"):
        for name in sorted(mine_pub[kind]):
            _agree(f"{HA}.{kind} ({name}).virtual_address", host, mine_pub[kind][name][0],
                   peer, their_pub[kind][name][0])
            _agree(f"{HA}.{kind} ({name}).vrid", host, mine_pub[kind][name][1],
                   peer, their_pub[kind][name][1])
    for key in ("vrrp_version", "advert_interval", "auth_pass", "preempt", "preempt_delay"):
        _agree(f"{HA}.{key}", host, mine[key], peer, theirs[key])
    own_sync = ipaddress.ip_interface(mine["sync_address"])
    peer_sync = ipaddress.ip_interface(theirs["sync_address"])
    _agree(f"{HA}.sync_address (network)", host, str(own_sync.network), peer, str(peer_sync.network))
    if own_sync.ip == peer_sync.ip:
        raise ValidationError(f"{HA}.sync_address", {host: str(own_sync), peer: str(peer_sync)},
                              "a different address on each router of the pair")
    mine["peer_sync_address"] = str(peer_sync.ip)
    mine["ignore_addresses"] = sorted({str(own_sync.ip), str(peer_sync.ip), "127.0.0.1"} | {
        i["real_address"] for s in (mine, theirs) for k in ("uplinks",) for i in s[k] if i["real_address"]})
    return mine


def with_ha(model: Dict[str, Any], settings: Dict[str, Any]) -> Dict[str, Any]:
    """The router model of a pair member: NAT to the virtual addresses, the HA section."""
    out = dict(model)
    vips = {i["name"]: str(ipaddress.ip_interface(i["virtual_address"]).ip) for i in settings["uplinks"]}
    balance = dict(model["balance"])
    balance["uplinks"] = [dict(up, snat_address=vips[up["name"]]) for up in balance["uplinks"]]
    out["balance"] = balance
    out["sysctl"] = dict(model["sysctl"], **SYSCTL)
    out["ha"] = {k: v for k, v in settings.items() if k != "auth_pass"}
    return out
