"""Validate policy_route_table parameters into the normalised route/rule model.

Only checks that need no kernel state live here; ``routing`` adds the ones that do
(devices, connected prefixes, local addresses, priorities used by other tables).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from ..errors import ValidationError
from ..routing import rt_tables
from ..routing.iproute import DEFAULT_METRIC, FULL_MASK, ROUTE_TYPES, Route, Rule, prefix
from . import vocabulary as vocab

MAIN_TABLE = 254
PRIORITY_RANGE = (1, 32765)  # 0, 32766 and 32767 hold the kernel's local/main/default rules
FAMILIES = {"ipv4": 4, "ipv6": 6}
ROUTE_KEYS = {"dest", "gateway", "dev", "src", "metric", "type", "onlink", "family"}
RULE_KEYS = {"priority", "from", "to", "fwmark", "fwmask", "iif", "oif",
             "suppress_prefixlength", "invert", "family"}


@dataclass(frozen=True)
class TableSpec:
    name: str
    table_id: int | None
    state: str
    purge: bool
    routes: tuple[Route, ...]
    rules: tuple[Rule, ...]
    suppress_priority: int | None
    suppress_state: str
    families: tuple[int, ...]
    # Routes through a device that does not exist (yet) or lacks their src address are
    # left out instead of refused: the uplink is absent, the monitor adds them when it appears.
    dev_may_be_absent: bool = False
    # Non-static uplinks: addresses, gateway and source rules learned from this interface
    # when applied (routing/learned.py); the source rules get ``learn_priority``.
    learn_from: str | None = None
    learn_priority: int | None = None


def _bool(option: str, value: Any, default: bool) -> bool:
    return vocab.boolean(option, value, default)


def _ifname(option: str, value: Any) -> str | None:
    if value is None:
        return None
    return vocab.ifname(option, value)


def _family_of(option: str, value: Any, kind: str) -> tuple[str | None, int | None]:
    """Canonical text and family of an address or prefix; (None, None) when unset."""
    if value is None:
        return None, None
    if not isinstance(value, str):
        raise ValidationError(option, value, f"an IPv4 or IPv6 {kind} as a string")
    try:
        if kind == "address":
            ip = ipaddress.ip_address(value)
            return str(ip), ip.version
        if value in ("default", "all"):
            return "default", None
        net = ipaddress.ip_network(value, strict=True)
        return prefix(value), net.version
    except ValueError:
        allowed = ("an IPv4 or IPv6 address such as 192.0.2.1 or 2001:db8::1" if kind == "address"
                   else "'default' or a prefix with no host bits set, such as 192.0.2.0/24 or 2001:db8::/64")
        raise ValidationError(option, value, allowed) from None


def _one_family(option: str, found: dict[str, int | None], explicit: int | None) -> int | None:
    fams = {f for f in found.values() if f is not None}
    if explicit is not None:
        fams.add(explicit)
    if len(fams) > 1:
        parts = ", ".join(f"{k}=IPv{v}" for k, v in found.items() if v is not None)
        raise ValidationError(option, parts + (f", family=IPv{explicit}" if explicit else ""),
                              "every address of one entry must be of the same family")
    return fams.pop() if fams else None


def _unknown_keys(option: str, entry: Any, keys: set[str]) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise ValidationError(option, entry, "a dictionary")
    extra = sorted(set(entry) - keys)
    if extra:
        raise ValidationError(option, extra, f"known keys are {', '.join(sorted(keys))}")
    return entry


def parse_route(i: int, entry: Any) -> Route:
    opt = f"routes[{i}]"
    entry = _unknown_keys(opt, entry, ROUTE_KEYS)
    if entry.get("dest") is None:
        raise ValidationError(f"{opt}.dest", None, "a destination is required: 'default' or a prefix")
    dst, dfam = _family_of(f"{opt}.dest", entry["dest"], "prefix")
    gw, gfam = _family_of(f"{opt}.gateway", entry.get("gateway"), "address")
    src, sfam = _family_of(f"{opt}.src", entry.get("src"), "address")
    explicit = entry.get("family")
    if explicit is not None:
        explicit = FAMILIES[vocab.choice(f"{opt}.family", explicit, tuple(FAMILIES))]
    family = _one_family(opt, {"dest": dfam, "gateway": gfam, "src": sfam}, explicit)
    if family is None:
        raise ValidationError(f"{opt}.family", None,
                              "dest 'default' without gateway or src needs family: ipv4 or ipv6")
    rtype = vocab.choice(f"{opt}.type", entry.get("type") or "unicast", ROUTE_TYPES)
    dev = _ifname(f"{opt}.dev", entry.get("dev"))
    onlink = _bool(f"{opt}.onlink", entry.get("onlink"), False)
    metric = entry.get("metric")
    if metric is None:
        metric = DEFAULT_METRIC[family]
    else:
        metric = vocab.bounded(f"{opt}.metric", metric, 0, 2**32 - 1)
    if rtype != "unicast":
        for key in ("gateway", "dev", "src"):
            if entry.get(key) is not None:
                raise ValidationError(f"{opt}.{key}", entry[key],
                                      f"nothing: a {rtype} route has no {key}")
        if onlink:
            raise ValidationError(f"{opt}.onlink", True, f"false: a {rtype} route has no gateway")
    elif gw is None and dev is None:
        raise ValidationError(opt, entry["dest"], "a unicast route needs a gateway, a dev or both")
    if onlink and (gw is None or dev is None):
        raise ValidationError(f"{opt}.onlink", True, "onlink needs both gateway and dev")
    if gw is not None and ipaddress.ip_address(gw).is_link_local and dev is None:
        raise ValidationError(f"{opt}.gateway", gw, "a link-local gateway needs dev")
    return Route(family, dst, rtype, gw, dev, src, metric, onlink)


def _rule_families(opt: str, entry: dict[str, Any], found: dict[str, int | None],
                   route_families: set[int]) -> list[int]:
    raw = entry.get("family")
    if raw is not None:
        vocab.choice(f"{opt}.family", raw, ("ipv4", "ipv6", "both"))
    fam = _one_family(opt, found, FAMILIES.get(raw))
    if fam is not None:
        return [fam]
    if raw == "both":
        return [4, 6]
    return sorted(route_families) or [4, 6]


def parse_rule(i: int, entry: Any, table_id: int, route_families: set[int]) -> list[Rule]:
    opt = f"rules[{i}]"
    entry = _unknown_keys(opt, entry, RULE_KEYS)
    if entry.get("priority") is None:
        raise ValidationError(f"{opt}.priority", None, "a priority is required")
    prio = vocab.bounded(f"{opt}.priority", entry["priority"], *PRIORITY_RANGE)
    src, sfam = _family_of(f"{opt}.from", entry.get("from"), "prefix")
    dst, dfam = _family_of(f"{opt}.to", entry.get("to"), "prefix")
    src = None if src == "default" else src
    dst = None if dst == "default" else dst
    families = _rule_families(opt, entry, {"from": sfam, "to": dfam}, route_families)
    mark = entry.get("fwmark")
    mask = entry.get("fwmask")
    if mark is not None:
        mark = vocab.bounded(f"{opt}.fwmark", mark, 0, FULL_MASK, hex_ok=True)
        mask = FULL_MASK if mask is None else vocab.bounded(f"{opt}.fwmask", mask, 1, FULL_MASK, hex_ok=True)
        if mark & ~mask:
            raise ValidationError(f"{opt}.fwmark", entry["fwmark"],
                                  f"a mark whose bits all lie inside fwmask {mask:#x}")
    elif mask is not None:
        raise ValidationError(f"{opt}.fwmask", mask, "nothing unless fwmark is set")
    supp = entry.get("suppress_prefixlength")
    if supp is not None:
        supp = vocab.bounded(f"{opt}.suppress_prefixlength", supp, 0, 32 if families == [4] else 128)
        if 6 in families and 4 in families and supp > 32:
            raise ValidationError(f"{opt}.suppress_prefixlength", supp,
                                  "0 to 32 for a rule applied to both families")
    invert = _bool(f"{opt}.invert", entry.get("invert"), False)
    iif = _ifname(f"{opt}.iif", entry.get("iif"))
    oif = _ifname(f"{opt}.oif", entry.get("oif"))
    return [Rule(f, prio, table_id, src, dst, mark, mask, iif, oif, supp, invert) for f in families]


def _suppress(params: dict[str, Any]) -> tuple[int | None, str]:
    raw = params.get("main_suppress_default")
    if raw is None:
        return None, "present"
    raw = _unknown_keys("main_suppress_default", raw, {"priority", "state"})
    if raw.get("priority") is None:
        raise ValidationError("main_suppress_default.priority", None, "a priority is required")
    prio = vocab.bounded("main_suppress_default.priority", raw["priority"], *PRIORITY_RANGE)
    state = vocab.choice("main_suppress_default.state", raw.get("state") or "present", ("present", "absent"))
    return prio, state


def _list(option: str, value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValidationError(option, value, "a list")
    return value


def parse_params(params: dict[str, Any]) -> TableSpec:
    name = rt_tables.validate_name(params.get("name"))
    state = vocab.choice("state", params.get("state") or "present", ("present", "absent"))
    purge = _bool("purge", params.get("purge"), True)
    table_id = params.get("id")
    if table_id is not None:
        table_id = rt_tables.validate_id(table_id)
    elif state == "present":
        raise ValidationError("id", None, "an id from 1 to 4294967295 is required with state=present")
    routes: list[Route] = []
    rules: list[Rule] = []
    if state == "present":
        routes = [parse_route(i, e) for i, e in enumerate(_list("routes", params.get("routes")))]
        seen: dict[tuple[int, str, int], int] = {}
        for i, r in enumerate(routes):
            if r.key() in seen:
                raise ValidationError(f"routes[{i}].dest", r.dst,
                                      f"one route per destination and metric; routes[{seen[r.key()]}] "
                                      f"already has {r.dst} metric {r.metric} (IPv{r.family})")
            seen[r.key()] = i
        route_families = {r.family for r in routes}
        used: dict[tuple[int, int], int] = {}
        for i, e in enumerate(_list("rules", params.get("rules"))):
            for rule in parse_rule(i, e, table_id, route_families):
                slot = (rule.family, rule.priority)
                if slot in used:
                    raise ValidationError(f"rules[{i}].priority", rule.priority,
                                          f"a priority not already used by rules[{used[slot]}] "
                                          f"(IPv{rule.family})")
                used[slot] = i
                rules.append(rule)
    elif params.get("routes") or params.get("rules"):
        raise ValidationError("routes", "...", "no routes or rules with state=absent")
    supp_prio, supp_state = _suppress(params)
    if supp_prio is not None and any(r.priority == supp_prio for r in rules):
        raise ValidationError("main_suppress_default.priority", supp_prio,
                              "a priority not used by any entry of rules")
    families = tuple(sorted({r.family for r in routes} | {r.family for r in rules})) or (4, 6)
    return TableSpec(name, table_id, state, purge, tuple(routes), tuple(rules),
                     supp_prio, supp_state, families,
                     _bool("dev_may_be_absent", params.get("dev_may_be_absent"), False),
                     _ifname("learn_from", params.get("learn_from")),
                     _learn_priority(params.get("learn_priority")))


def _learn_priority(value: Any) -> int | None:
    if value is None:
        return None
    low, high = PRIORITY_RANGE
    return vocab.bounded("learn_priority", value, low, high)
