"""The role's variables -> one validated router model (``model.json``).

``build_model(role_vars)`` checks every cross-field rule (unique names, interfaces, marks
and table ids; gateways inside their uplink's prefix; monitor targets present) and
derives everything the router needs: the ``conntrack_balance`` params, one
``policy_route_table`` params dict per uplink, the kernel settings and the failover
(LSM) settings. Errors name the role variable (``multihome_uplinks[1].gateway``), the
value and what is allowed. Pure: no kernel access, runs on the controller.
"""
from __future__ import annotations

import ipaddress
from typing import Any, Dict, List, Optional

from ..errors import ValidationError
from ..failover.probes import DEGRADED, connection_name
from . import naming
from . import vocabulary as vocab
from .overlaps import check_addressing
from .policy import parse_policy
from .profiles import degraded_settings, monitor_settings
from .table_spec import parse_params as parse_table_params

MODEL_VERSION = 1
UPLINKS = "multihome_uplinks"
LANS = "multihome_lans"

# Rule priorities: main first (connected and LAN routes win), then per uplink its
# source-address, output-interface and fwmark rules. Two tables may not share a
# priority, so each uplink's rules sit at base + its mark's slot (1-999).
PRIO_MAIN_SUPPRESS = 1000
PRIO_FROM = 2000
PRIO_OIF = 3000
PRIO_FWMARK = 4000
# The router's own unmarked traffic: after every uplink rule, before main (routing/own_traffic.py).
PRIO_OWN_TRAFFIC = 5000
MAX_SLOT = 999
ADDRESSING = ("static", "dhcp", "dynamic")
# Highest metric: the terminating route is used only when no gateway route of the table is.
TERMINATING_METRIC = 2**32 - 1


def _get(role_vars: Dict[str, Any], key: str, default: Any) -> Any:
    value = role_vars.get(key)
    return default if value is None else value


def _list_of_dicts(option: str, value: Any, min_items: int = 0) -> List[Dict[str, Any]]:
    if value is None:
        value = []
    if not isinstance(value, list):
        raise ValidationError(option, value, "a list of dictionaries")
    value = vocab.dicts(option, value)
    if len(value) < min_items:
        raise ValidationError(option, value, f"a list with at least {min_items} entries")
    return value


def _iface_addr(option: str, value: Any, version: int) -> ipaddress._BaseAddress:
    kind = "IPv4" if version == 4 else "IPv6"
    example = "198.51.100.2/30" if version == 4 else "2001:db8:1::2/64"
    allowed = f"an {kind} address with its prefix length, such as {example}"
    if not isinstance(value, str) or "/" not in value:
        raise ValidationError(option, value, allowed)
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError:
        raise ValidationError(option, value, allowed) from None
    if iface.version != version or (iface.ip == iface.network.network_address and iface.network.prefixlen < (
        31 if version == 4 else 127
    )):
        raise ValidationError(option, value, allowed + " (a host address, not the network's)")
    return iface  # type: ignore[return-value]


def _gateway(option: str, value: Any, iface: Any, interface: str) -> str:
    """Inside the prefix; any peer when the address is a host route (point-to-point, the
    route gets onlink); an IPv6 link-local address, bare or as ``fe80::1%<interface>``."""
    allowed = (f"an address inside the uplink's prefix {iface.network}, a point-to-point peer "
               f"(with a /{iface.max_prefixlen} address) or an IPv6 link-local address")
    text = str(value)
    if "%" in text:
        text, scope = text.split("%", 1)
        if scope != interface:
            raise ValidationError(option, value, f"a link-local gateway scoped to the uplink's interface "
                                                 f"({text}%{interface})")
    try:
        gw = ipaddress.ip_address(text)
    except ValueError:
        raise ValidationError(option, value, allowed) from None
    point_to_point = iface.network.prefixlen == iface.max_prefixlen
    if gw.version != iface.version or gw == iface.ip or not (
            gw in iface.network or point_to_point or (gw.version == 6 and gw.is_link_local)):
        raise ValidationError(option, value, allowed + f" other than the uplink's own {iface.ip}")
    return str(gw)


def _targets(option: str, value: Any) -> List[str]:
    allowed = "a non-empty list of IPv4 addresses to probe a few hops upstream"
    if not isinstance(value, list) or not value:
        raise ValidationError(option, value, allowed)
    out = []
    for j, item in enumerate(value):
        try:
            ip = ipaddress.ip_address(str(item))
        except ValueError:
            raise ValidationError(f"{option}[{j}]", item, allowed) from None
        if ip.version != 4 or ip.is_unspecified or ip.is_multicast or ip.is_loopback:
            raise ValidationError(f"{option}[{j}]", item, "a unicast IPv4 address (LSM probes IPv4)")
        if str(ip) in out:
            raise ValidationError(f"{option}[{j}]", item, "an address not listed twice")
        out.append(str(ip))
    return out


def _uplink(i: int, raw: Dict[str, Any], failover: bool) -> Dict[str, Any]:
    opt = f"{UPLINKS}[{i}]"
    name = vocab.name(f"{opt}.name", raw.get("name"))
    up: Dict[str, Any] = {"name": name, "interface": vocab.ifname(f"{opt}.interface", raw.get("interface"))}
    up["addressing"] = vocab.choice(f"{opt}.addressing", raw.get("addressing", "static"), ADDRESSING)
    if up["addressing"] != "static":
        for key in ("address", "gateway", "address6", "gateway6"):
            if raw.get(key) is not None:
                raise ValidationError(f"{opt}.{key}", raw.get(key), f"nothing when addressing is "
                                      f"{up['addressing']} (learned from the kernel)")
    elif raw.get("address") is None and raw.get("address6") is None:
        raise ValidationError(f"{opt}.address", None, "an IPv4 address/prefix (or address6 for IPv6-only)")
    for fam, akey, gkey in ((4, "address", "gateway"), (6, "address6", "gateway6")):
        if raw.get(akey) is None:
            if raw.get(gkey) is not None:
                raise ValidationError(f"{opt}.{gkey}", raw.get(gkey), f"nothing unless {akey} is set")
            continue
        iface = _iface_addr(f"{opt}.{akey}", raw.get(akey), fam)
        if raw.get(gkey) is None:
            raise ValidationError(f"{opt}.{gkey}", None, f"the ISP's gateway inside {iface.network}")
        up[akey] = str(iface)
        up[gkey] = _gateway(f"{opt}.{gkey}", raw.get(gkey), iface, up["interface"])
    dynamic = up["addressing"] != "static"
    default_nat = "snat" if "address" in up else "masquerade" if dynamic else "none"
    nat = vocab.choice(f"{opt}.nat", raw.get("nat", default_nat), ("snat", "masquerade", "none"))
    if nat == "snat" and "address" not in up:
        raise ValidationError(f"{opt}.nat", nat,
                              "masquerade or none when the uplink has no static IPv4 address")
    up["nat"] = nat
    for key in ("weight", "tier"):
        value = raw.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValidationError(f"{opt}.{key}", value, "an integer >= 0")
        up[key] = value
    for key in ("mark", "table"):
        if raw.get(key) is not None:
            up[key] = raw[key]
    up["nptv6"] = raw.get("nptv6") or []
    up["source_prefixes"] = raw.get("source_prefixes") or []
    if failover:
        up["targets"] = _targets(f"{opt}.targets", raw.get("targets"))
    else:
        up["targets"] = list(raw.get("targets") or [])
    up["monitor"] = raw.get("monitor") or {}
    up["degraded_when"] = raw.get("degraded_when")
    up["may_be_absent"] = vocab.boolean(f"{opt}.interface_may_be_absent",
                                        raw.get("interface_may_be_absent"), False)
    return up


def _lan(i: int, raw: Dict[str, Any]) -> Dict[str, Any]:
    opt = f"{LANS}[{i}]"
    name = vocab.name(f"{opt}.name", raw.get("name"))
    prefixes = raw.get("prefixes")
    if isinstance(prefixes, str):
        prefixes = [prefixes]
    if not isinstance(prefixes, list) or not prefixes:
        raise ValidationError(
            f"{opt}.prefixes", prefixes, "a non-empty list of prefixes such as 192.168.1.0/24"
        )
    for j, p in enumerate(prefixes):
        try:
            ipaddress.ip_network(str(p), strict=True)
        except ValueError:
            raise ValidationError(
                f"{opt}.prefixes[{j}]", p, "a prefix with no host bits set, such as 192.168.1.0/24"
            ) from None
    return {"name": name, "interface": vocab.ifname(f"{opt}.interface", raw.get("interface")),
            "prefixes": [str(p) for p in prefixes]}


def _routing(up: Dict[str, Any], table_id: int, mark: int, mask: int) -> Dict[str, Any]:
    slot = mark >> naming.mask_shift(mask)
    routes: List[Dict[str, Any]] = []
    rules: List[Dict[str, Any]] = []
    dynamic = up["addressing"] != "static"
    for akey, gkey, fam in (("address", "gateway", "ipv4"), ("address6", "gateway6", "ipv6")):
        if akey not in up and not dynamic:
            continue
        if akey in up:
            iface = ipaddress.ip_interface(up[akey])
            gateway = ipaddress.ip_address(up[gkey])
            routes.append({"dest": str(iface.network), "dev": up["interface"], "src": str(iface.ip)})
            default = {"dest": "default", "gateway": up[gkey], "dev": up["interface"]}
            if gateway not in iface.network and not gateway.is_link_local:
                default["onlink"] = True  # a point-to-point peer
            routes.append(default)
            rules.append({"priority": PRIO_FROM + slot, "from": f"{iface.ip}/{iface.max_prefixlen}"})
        rules.append({"priority": PRIO_OIF + slot, "oif": up["interface"], "family": fam})
        rules.append({"priority": PRIO_FWMARK + slot, "fwmark": mark, "fwmask": mask, "family": fam})
    # The table ends in a terminating route in both families: a flow carrying this uplink's
    # mark whose route is missing fails at once instead of falling through to main and
    # leaving by another ISP with this uplink's NAT binding.
    for fam in ("ipv4", "ipv6"):
        routes.append({"dest": "default", "type": "unreachable", "family": fam, "metric": TERMINATING_METRIC})
        if not any(r.get("family") == fam and "fwmark" in r for r in rules):
            rules.append({"priority": PRIO_FWMARK + slot, "fwmark": mark, "fwmask": mask, "family": fam})
    table = {
        "name": naming.table_name(up["name"]),
        "id": table_id,
        "state": "present",
        "routes": routes,
        "rules": rules,
        "main_suppress_default": {"priority": PRIO_MAIN_SUPPRESS, "state": "present"},
    }
    if up["may_be_absent"] or dynamic:
        table["dev_may_be_absent"] = True
    if dynamic:
        table["learn_from"] = up["interface"]
        table["learn_priority"] = PRIO_FROM + slot
    return table


def _balance(role_vars: Dict[str, Any], uplinks, lans, marks, mask) -> Dict[str, Any]:
    out_uplinks = []
    for up in uplinks:
        entry: Dict[str, Any] = {
            "name": up["name"], "interface": up["interface"], "mark": marks[up["name"]],
            "weight": up["weight"], "tier": up["tier"], "nat": up["nat"],
        }
        if up["nat"] == "snat":
            entry["snat_address"] = str(ipaddress.ip_interface(up["address"]).ip)
        for key in ("nptv6", "source_prefixes"):
            if up[key]:
                entry[key] = up[key]
        if up["may_be_absent"]:
            entry["interface_may_be_absent"] = True
        out_uplinks.append(entry)
    return {
        "state": "present",
        "backend": _get(role_vars, "multihome_backend", "nftables"),
        "mode": _get(role_vars, "multihome_balance_mode", "round_robin"),
        "mark_mask": mask,
        "uplinks": out_uplinks,
        "lans": [{"name": lan["name"], "interfaces": [lan["interface"]], "prefixes": lan["prefixes"]}
                 for lan in lans],
        "pins": _get(role_vars, "multihome_pins", []),
        "bypass": _get(role_vars, "multihome_bypass", []),
        "nptv6_inbound": _get(role_vars, "multihome_nptv6_inbound", "established"),
    }


def _sysctl(uplinks: List[Dict[str, Any]], lans: List[Dict[str, Any]], ipv6: bool) -> Dict[str, str]:
    """Slash-form keys (interface names may contain dots)."""
    out = {"net/ipv4/ip_forward": "1", "net/ipv4/conf/all/src_valid_mark": "1",
           # The kernel applies max(conf.all, conf.<if>): with Ubuntu's all=2 (or 1) the LANs'
           # strict 1 would silently turn loose (or the uplinks strict). 0 lets each interface's
           # own value decide; distributions set those (default.rp_filter) for the others.
           "net/ipv4/conf/all/rp_filter": "0"}
    if ipv6:
        out["net/ipv6/conf/all/forwarding"] = "1"
    for up in uplinks:
        # Loose (2), not off: rp_filter=0, as in "Policy routing, multihoming and all that jazz",
        # drops reverse-path protection.
        out[f"net/ipv4/conf/{up['interface']}/rp_filter"] = "2"
    for lan in lans:
        # Strict (1) on LANs: a LAN host's packet whose source is not routed back through
        # its LAN is spoofed; it is dropped instead of being NATed to an uplink address.
        out[f"net/ipv4/conf/{lan['interface']}/rp_filter"] = "1"
    return out


def _local_default(role_vars: Dict[str, Any], uplinks: List[Dict[str, Any]]) -> Optional[str]:
    chosen = role_vars.get("multihome_local_default_uplink")
    names = [u["name"] for u in uplinks]
    if chosen:
        if chosen not in names:
            raise ValidationError("multihome_local_default_uplink", chosen, "one of " + ", ".join(names))
        return chosen
    ranked = sorted((u for u in uplinks if u["weight"] > 0), key=lambda u: (u["tier"], u["name"]))
    return ranked[0]["name"] if ranked else names[0]


def _map_errors(option_prefix: str, exc: ValidationError) -> ValidationError:
    """Rename an engine option (``uplinks[0].mark``) to the role variable."""
    opt = exc.option
    mapping = {"uplinks": UPLINKS, "lans": LANS, "pins": "multihome_pins", "bypass": "multihome_bypass",
               "mode": "multihome_balance_mode", "backend": "multihome_backend",
               "mark_mask": "multihome_mark_mask"}
    for src, dst in mapping.items():
        if opt == src or opt.startswith(src + "[") or opt.startswith(src + "."):
            return ValidationError(dst + opt[len(src):], exc.value, exc.allowed)
    return ValidationError(f"{option_prefix}.{opt}", exc.value, exc.allowed)


def build_model(role_vars: Dict[str, Any]) -> Dict[str, Any]:
    """Validate the role variables and return the router model (see docs/contracts.md)."""
    failover = _get(role_vars, "multihome_failover", True)
    if not isinstance(failover, bool):
        raise ValidationError("multihome_failover", failover, "true or false")
    raw_uplinks = _list_of_dicts(UPLINKS, role_vars.get(UPLINKS), 1)
    uplinks = [_uplink(i, u, failover) for i, u in enumerate(raw_uplinks)]
    lans = [_lan(i, u) for i, u in enumerate(_list_of_dicts(LANS, role_vars.get(LANS), 1))]
    vocab.unique(UPLINKS, enumerate(item["name"] for item in uplinks), "name")
    vocab.unique(UPLINKS, enumerate(item["interface"] for item in uplinks), "interface")
    vocab.unique(LANS, enumerate(item["name"] for item in lans), "name")
    vocab.unique(LANS, enumerate(item["interface"] for item in lans), "interface")
    up_ifs = {u["interface"]: i for i, u in enumerate(uplinks)}
    for i, lan in enumerate(lans):
        if lan["interface"] in up_ifs:
            raise ValidationError(
                f"{LANS}[{i}].interface", lan["interface"],
                f"an interface that is not {UPLINKS}[{up_ifs[lan['interface']]}].interface",
            )
    check_addressing(uplinks, lans, UPLINKS, LANS)
    mask = vocab.mark_mask("multihome_mark_mask", role_vars.get("multihome_mark_mask"))
    marks = naming.assign_marks(uplinks, mask, UPLINKS)
    tables = naming.assign_tables(uplinks, UPLINKS)
    for i, up in enumerate(uplinks):
        if marks[up["name"]] >> naming.mask_shift(mask) > MAX_SLOT:
            raise ValidationError(
                f"{UPLINKS}[{i}].mark", hex(marks[up["name"]]),
                f"a mark whose value under multihome_mark_mask is at most {MAX_SLOT} "
                "(it also numbers the uplink's policy rules)",
            )

    balance = _balance(role_vars, uplinks, lans, marks, mask)
    try:
        parse_policy(balance)
    except ValidationError as exc:
        raise _map_errors("conntrack_balance", exc) from None
    routing = [_routing(u, tables[u["name"]], marks[u["name"]], mask) for u in uplinks]
    for i, params in enumerate(routing):
        try:
            parse_table_params(params)
        except ValidationError as exc:
            raise ValidationError(
                f"{UPLINKS}[{i}] (routing table: {exc.option})", exc.value, exc.allowed
            ) from None

    ipv6 = any("address6" in u for u in uplinks)
    profile = _get(role_vars, "multihome_monitor_profile", "fast")
    monitors: Dict[str, Any] = {}
    degraded: Dict[str, Any] = {}
    for i, up in enumerate(uplinks):
        monitors[up["name"]] = monitor_settings(profile, up["monitor"], f"{UPLINKS}[{i}].monitor",
                                                len(up["targets"]))
        degraded[up["name"]] = degraded_settings(up["degraded_when"], f"{UPLINKS}[{i}].degraded_when",
                                                 monitors[up["name"]])
    local_default = _local_default(role_vars, uplinks)
    return {
        "version": MODEL_VERSION,
        "balance": balance,
        "routing": routing,
        "sysctl": _sysctl(uplinks, lans, ipv6),
        "local_default": _local_default_routes(uplinks, local_default),
        "own_traffic": {"table": _own_table(tables), "priority": PRIO_OWN_TRAFFIC},
        "failover": {
            "enabled": failover,
            "profile": profile,
            "uplinks": {
                u["name"]: {
                    "interface": u["interface"],
                    "source": str(ipaddress.ip_interface(u["address"]).ip) if "address" in u else None,
                    "targets": u["targets"],
                    "mark": marks[u["name"]],
                    "mask": mask,
                    "table": tables[u["name"]],
                    "monitor": monitors[u["name"]],
                    DEGRADED: degraded[u["name"]],
                }
                for u in uplinks
            },
        },
    }


def _own_table(tables: Dict[str, int]) -> int:
    """The owned table for the router's own traffic: derived like the uplinks' ids, never one of them."""
    table_id = naming.derive_table_id("-own-traffic")
    while table_id in tables.values():
        table_id += 1
    return table_id


def _local_default_routes(uplinks: List[Dict[str, Any]], name: Optional[str]) -> Dict[str, Any]:
    up = next(u for u in uplinks if u["name"] == name)
    out: Dict[str, Any] = {"uplink": name, "interface": up["interface"]}
    for key in ("gateway", "gateway6"):
        if key in up:
            out[key] = up[key]
    return out


def lsm_connections(model: Dict[str, Any], hook: str) -> List[Dict[str, Any]]:
    """The LSM config's connections: per target one bound to its uplink's device and
    source address, plus a stricter one when the uplink has ``degraded_when``; each runs
    the hook with its own name (failover/probes.py turns the verdicts into the uplink's)."""
    conns: List[Dict[str, Any]] = []
    for name, up in sorted(model["failover"]["uplinks"].items()):
        count = len(up["targets"])
        for n, target in enumerate(up["targets"], 1):
            common = {"checkip": target, "device": up["interface"], "sourceip": up["source"] or "",
                      "eventscript": hook}
            conns.append({"name": connection_name(name, "probe", n, count), **common, **up["monitor"]["lsm"]})
            if up.get(DEGRADED):
                conns.append({"name": connection_name(name, DEGRADED, n, count), **common,
                              **up[DEGRADED]["lsm"]})
    return conns
