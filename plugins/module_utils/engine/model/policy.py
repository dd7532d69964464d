"""Balancing model: uplinks, LANs, pins and bypass, validated from the module's params.

Everything here is pure: no kernel access. ``parse_policy`` turns the conntrack_balance
module's options into a :class:`Policy` or raises :class:`ValidationError` naming the
option, the value and what is allowed. Which uplinks receive new flows is decided in
``ruleset/choice.py``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from math import gcd
from typing import Union

from ..errors import ValidationError
from . import vocabulary as vocab

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

BACKENDS = ("nftables", "iptables")
MODES = ("round_robin", "random", "source_hash")
NAT_KINDS = ("masquerade", "snat", "none")
STATES = ("up", "down")
# New connections from an uplink to a host behind its NPTv6 translation: refused
# (established/related only, the default) or let through.
NPTV6_INBOUND = ("established", "any")
# Largest slot table (sum of reduced weights) a rule may carry.
MAX_SLOTS = 256
# iptables spells source_hash with the cluster match, which takes at most 32 slots.
MAX_IPTABLES_HASH_SLOTS = 32


@dataclass(frozen=True)
class Nptv6:
    inside: ipaddress.IPv6Network
    outside: ipaddress.IPv6Network


@dataclass(frozen=True)
class Uplink:
    name: str
    interface: str
    mark: int
    weight: int = 1
    tier: int = 1
    state: str = "up"
    nat: str = "masquerade"
    snat_address: ipaddress.IPv4Address | None = None
    nptv6: tuple[Nptv6, ...] = ()
    source_prefixes: tuple[Network, ...] = ()
    may_be_absent: bool = False


@dataclass(frozen=True)
class Lan:
    name: str
    interfaces: tuple[str, ...]
    prefixes: tuple[Network, ...]


@dataclass(frozen=True)
class Pin:
    uplink: str
    sources: tuple[Network, ...] = ()
    destinations: tuple[Network, ...] = ()


@dataclass(frozen=True)
class Policy:
    backend: str
    mode: str
    mask: int
    uplinks: tuple[Uplink, ...]
    lans: tuple[Lan, ...]
    pins: tuple[Pin, ...] = ()
    bypass: tuple[Network, ...] = ()
    present: bool = True
    nptv6_inbound: str = "established"

    def uplink(self, name: str) -> Uplink:
        for up in self.uplinks:
            if up.name == name:
                return up
        raise KeyError(name)

    @property
    def lan_prefixes(self) -> list[Network]:
        return [p for lan in self.lans for p in lan.prefixes]

    @property
    def lan_interfaces(self) -> list[str]:
        return [i for lan in self.lans for i in lan.interfaces]


# ----------------------------------------------------------------------------- parsing


def _prefix(option: str, value: object) -> Network:
    allowed = "an IPv4 or IPv6 prefix such as 192.0.2.0/24 or 2001:db8::/48"
    if not isinstance(value, str):
        raise ValidationError(option, value, allowed)
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ValidationError(option, value, allowed) from None


def _prefixes(option: str, values: object) -> tuple[Network, ...]:
    if values is None:
        return ()
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, (list, tuple)):
        raise ValidationError(option, values, "a list of IPv4/IPv6 prefixes")
    return tuple(_prefix(f"{option}[{i}]", v) for i, v in enumerate(values))


def _parse_nptv6(option: str, values: object) -> tuple[Nptv6, ...]:
    out = []
    for i, item in enumerate(vocab.dicts(option, values)):
        opt = f"{option}[{i}]"
        inside = _prefix(f"{opt}.inside", item.get("inside"))
        outside = _prefix(f"{opt}.outside", item.get("outside"))
        for key, net in (("inside", inside), ("outside", outside)):
            if net.version != 6:
                raise ValidationError(f"{opt}.{key}", item.get(key), "an IPv6 prefix")
        if inside.prefixlen != outside.prefixlen:
            raise ValidationError(
                f"{opt}.outside",
                item.get("outside"),
                f"a prefix of the same length as inside (/{inside.prefixlen})",
            )
        out.append(Nptv6(inside, outside))  # type: ignore[arg-type]
    return tuple(out)


def _parse_uplink(i: int, item: dict, mask: int) -> Uplink:
    opt = f"uplinks[{i}]"
    name = vocab.name(f"{opt}.name", item.get("name"))
    interface = vocab.ifname(f"{opt}.interface", item.get("interface"))
    mark_allowed = f"a non-zero mark whose bits all lie inside mark_mask {mask:#x}"
    mark = vocab.integer(f"{opt}.mark", item.get("mark"), mark_allowed)
    if mark <= 0 or mark & ~mask & 0xFFFFFFFF or mark > 0xFFFFFFFF:
        raise ValidationError(f"{opt}.mark", item.get("mark"), mark_allowed)
    weight = vocab.integer(f"{opt}.weight", item.get("weight", 1), "an integer >= 0")
    if weight < 0:
        raise ValidationError(f"{opt}.weight", item.get("weight"), "an integer >= 0")
    tier = vocab.integer(f"{opt}.tier", item.get("tier", 1), "an integer >= 0")
    if tier < 0:
        raise ValidationError(f"{opt}.tier", item.get("tier"), "an integer >= 0")
    state = vocab.choice(f"{opt}.state", item.get("state", "up"), STATES)
    nat = vocab.choice(f"{opt}.nat", item.get("nat", "masquerade"), NAT_KINDS)
    snat_address = None
    raw_addr = item.get("snat_address")
    if nat == "snat" or raw_addr is not None:
        allowed = "the uplink's IPv4 address (required when nat is snat)"
        try:
            snat_address = ipaddress.IPv4Address(str(raw_addr).strip())
        except ValueError:
            raise ValidationError(f"{opt}.snat_address", raw_addr, allowed) from None
        if nat != "snat":
            raise ValidationError(f"{opt}.nat", nat, "snat when snat_address is set")
    return Uplink(
        name=name,
        interface=interface,
        mark=mark,
        weight=weight,
        tier=tier,
        state=state,
        nat=nat,
        snat_address=snat_address,
        nptv6=_parse_nptv6(f"{opt}.nptv6", item.get("nptv6")),
        source_prefixes=_prefixes(f"{opt}.source_prefixes", item.get("source_prefixes")),
        may_be_absent=vocab.boolean(f"{opt}.interface_may_be_absent",
                                    item.get("interface_may_be_absent"), False),
    )


def _parse_lan(i: int, item: dict) -> Lan:
    opt = f"lans[{i}]"
    name = vocab.name(f"{opt}.name", item.get("name"))
    raw = item.get("interfaces")
    if raw is None and item.get("interface") is not None:
        raw = [item.get("interface")]
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, (list, tuple)) or not raw:
        raise ValidationError(f"{opt}.interfaces", raw, "a non-empty list of interface names")
    interfaces = tuple(vocab.ifname(f"{opt}.interfaces[{j}]", v) for j, v in enumerate(raw))
    prefixes = _prefixes(f"{opt}.prefixes", item.get("prefixes"))
    if not prefixes:
        raise ValidationError(f"{opt}.prefixes", item.get("prefixes"), "at least one prefix")
    return Lan(name, interfaces, prefixes)


def _parse_pin(i: int, item: dict, names: set[str]) -> Pin:
    opt = f"pins[{i}]"
    uplink = item.get("uplink")
    if uplink not in names:
        raise ValidationError(
            f"{opt}.uplink", uplink, "the name of a configured uplink: " + ", ".join(sorted(names))
        )
    sources = _prefixes(f"{opt}.sources", item.get("sources"))
    destinations = _prefixes(f"{opt}.destinations", item.get("destinations"))
    if not sources and not destinations:
        raise ValidationError(opt, item, "at least one of sources or destinations")
    return Pin(str(uplink), sources, destinations)


def _no_overlap(option: str, nets: list[tuple[str, Network]]) -> None:
    for a in range(len(nets)):
        for b in range(a + 1, len(nets)):
            (oa, na), (ob, nb) = nets[a], nets[b]
            if na.version == nb.version and na.overlaps(nb):  # type: ignore[arg-type]
                raise ValidationError(ob, str(nb), f"a prefix not overlapping {oa} ({na})")


def parse_policy(params: dict, interfaces: set[str] | None = None) -> Policy:
    """Validate the module's params; ``interfaces`` (if given) are the router's links."""
    backend = vocab.choice("backend", params.get("backend") or "nftables", BACKENDS)
    mode = vocab.choice("mode", params.get("mode") or "random", MODES)
    present = vocab.choice("state", params.get("state") or "present", ("present", "absent"))
    mask = vocab.mark_mask("mark_mask", params.get("mark_mask"))
    if present == "absent":
        return Policy(backend, mode, mask, (), (), present=False)

    raw_uplinks = vocab.dicts("uplinks", params.get("uplinks"))
    if not raw_uplinks:
        raise ValidationError("uplinks", params.get("uplinks"), "at least one uplink")
    uplinks = tuple(_parse_uplink(i, u, mask) for i, u in enumerate(raw_uplinks))
    vocab.unique("uplinks", enumerate(u.name for u in uplinks), "name")
    vocab.unique("uplinks", enumerate(u.mark for u in uplinks), "mark")
    vocab.unique("uplinks", enumerate(u.interface for u in uplinks), "interface")
    tiers = sorted({u.tier for u in uplinks})
    for tier in tiers:
        members = [u for u in uplinks if u.tier == tier]
        if all(u.weight == 0 for u in members):
            raise ValidationError(
                "uplinks[].weight",
                {u.name: u.weight for u in members},
                f"at least one weight > 0 in tier {tier}",
            )
        live = [u.weight for u in members if u.weight > 0]
        slots = sum(w // gcd(*live) for w in live)
        if backend == "iptables" and mode == "source_hash" and slots > MAX_IPTABLES_HASH_SLOTS:
            raise ValidationError(
                "uplinks[].weight",
                {u.name: u.weight for u in members},
                f"weights of tier {tier} whose reduced sum is at most {MAX_IPTABLES_HASH_SLOTS} with"
                " source_hash on the iptables backend (or the nftables backend)",
            )
        if sum(u.weight for u in members) > MAX_SLOTS:
            raise ValidationError(
                "uplinks[].weight",
                {u.name: u.weight for u in members},
                f"weights of tier {tier} summing to at most {MAX_SLOTS}",
            )
    lans = tuple(_parse_lan(i, item) for i, item in enumerate(vocab.dicts("lans", params.get("lans"))))
    if not lans:
        raise ValidationError("lans", params.get("lans"), "at least one LAN")
    vocab.unique("lans", enumerate(lan.name for lan in lans), "name")
    lan_ifs = [
        (f"lans[{i}].interfaces[{j}]", n) for i, lan in enumerate(lans) for j, n in enumerate(lan.interfaces)
    ]
    up_ifs = {u.interface: i for i, u in enumerate(uplinks)}
    seen_if: dict[str, str] = {}
    for opt, name in lan_ifs:
        if name in up_ifs:
            raise ValidationError(opt, name, f"an interface that is not uplinks[{up_ifs[name]}]'s")
        if name in seen_if:
            raise ValidationError(opt, name, f"an interface not already listed in {seen_if[name]}")
        seen_if[name] = opt
    _no_overlap(
        "lans",
        [(f"lans[{i}].prefixes[{j}]", p) for i, lan in enumerate(lans) for j, p in enumerate(lan.prefixes)],
    )
    names = {u.name for u in uplinks}
    pins = tuple(_parse_pin(i, p, names) for i, p in enumerate(vocab.dicts("pins", params.get("pins"))))
    bypass = _prefixes("bypass", params.get("bypass"))

    nptv6_inside = [
        (f"uplinks[{i}].nptv6[{j}].inside", m.inside)
        for i, u in enumerate(uplinks)
        for j, m in enumerate(u.nptv6)
    ]
    lan6 = [p for p in (p for lan in lans for p in lan.prefixes) if p.version == 6]
    for opt, inside in nptv6_inside:
        if not any(inside.subnet_of(p) for p in lan6):  # type: ignore[arg-type]
            raise ValidationError(opt, str(inside), "a prefix inside one of the LANs' IPv6 prefixes")

    _check_ipv6_carried(uplinks, lans, pins)

    inbound = vocab.choice("nptv6_inbound", params.get("nptv6_inbound") or "established", NPTV6_INBOUND)
    policy = Policy(backend, mode, mask, uplinks, lans, pins, bypass, True, inbound)
    if interfaces is not None:
        check_interfaces(policy, interfaces)
    return policy


def check_interfaces(policy: Policy, interfaces: set[str]) -> None:
    """Every LAN interface and every uplink interface not marked ``interface_may_be_absent``
    exists on the router (``interfaces``); a marked one that is missing is absent (down)."""
    for i, up in enumerate(policy.uplinks):
        if up.interface not in interfaces and not up.may_be_absent:
            raise ValidationError(
                f"uplinks[{i}].interface", up.interface,
                "an interface that exists on the router (or set interface_may_be_absent: true)",
            )
    for i, lan in enumerate(policy.lans):
        for j, name in enumerate(lan.interfaces):
            if name not in interfaces:
                raise ValidationError(
                    f"lans[{i}].interfaces[{j}]", name, "an interface that exists on the router"
                )


def _carriers(uplinks: Sequence[Uplink], net: Network) -> list[Uplink]:
    """Uplinks that can send any address of NET: they translate it or the ISP owns it."""
    return [
        u
        for u in uplinks
        if any(net.subnet_of(m.inside) for m in u.nptv6)  # type: ignore[arg-type]
        or any(p.version == 6 and net.subnet_of(p) for p in u.source_prefixes)  # type: ignore[arg-type]
    ]


def _uncovered(net: ipaddress.IPv6Network, covers: list[ipaddress.IPv6Network]) -> list:
    rest = [net]
    for cover in covers:
        nxt = []
        for part in rest:
            if part.subnet_of(cover):
                continue
            nxt += list(part.address_exclude(cover)) if cover.subnet_of(part) else [part]
        rest = nxt
    return rest


def _check_ipv6_carried(uplinks: Sequence[Uplink], lans: Sequence[Lan], pins: Sequence[Pin]) -> None:
    """An IPv6 flow may only leave by an uplink that translates or owns its source.

    IPv6 is not NATed by default, so every LAN IPv6 prefix needs an uplink that can carry
    each of its addresses, and each translated prefix needs one that takes new flows.
    """
    covers = [m.inside for u in uplinks for m in u.nptv6]
    covers += [p for u in uplinks for p in u.source_prefixes if p.version == 6]  # type: ignore[misc]
    for i, lan in enumerate(lans):
        for j, net in enumerate(lan.prefixes):
            if net.version != 6:
                continue
            missing = _uncovered(net, covers)  # type: ignore[arg-type]
            if missing:
                raise ValidationError(
                    f"lans[{i}].prefixes[{j}]",
                    str(net),
                    "an IPv6 prefix inside some uplink's nptv6 inside or source_prefixes "
                    f"(no uplink can carry {min(missing)}: its ISP would drop the packets)",
                )
    for inside, carriers in ipv6_groups(uplinks):
        if all(u.weight == 0 for u in carriers):
            raise ValidationError(
                "uplinks[].weight",
                {u.name: u.weight for u in carriers},
                f"at least one weight > 0 among the uplinks translating {inside}",
            )
    by_name = {u.name: u for u in uplinks}
    for i, pin in enumerate(pins):
        up = by_name[pin.uplink]
        for j, net in enumerate(pin.sources):
            if net.version == 6 and up not in _carriers([up], net):
                raise ValidationError(
                    f"pins[{i}].sources[{j}]",
                    str(net),
                    f"an IPv6 prefix that uplink {up.name} translates or owns",
                )
        for j, net in enumerate(pin.destinations):
            if net.version == 6 and not up.nptv6:
                raise ValidationError(
                    f"pins[{i}].destinations[{j}]",
                    str(net),
                    f"an IPv4 destination, or IPv6 only when uplink {up.name} has nptv6",
                )


def ipv6_groups(uplinks: Sequence[Uplink]) -> list[tuple[ipaddress.IPv6Network, list[Uplink]]]:
    """Each translated (nptv6) inside prefix with the uplinks able to carry it, most
    specific first: IPv6 new flows from it are balanced among those uplinks only."""
    insides = sorted({m.inside for u in uplinks for m in u.nptv6}, key=lambda n: (-n.prefixlen, n))
    return [
        (inside, [u for u in uplinks if any(inside.subnet_of(m.inside) for m in u.nptv6)])  # type: ignore[arg-type]
        for inside in insides
    ]


def policy_marks(policy: Policy) -> dict[str, tuple[int, int]]:
    return {u.name: (u.mark, policy.mask) for u in policy.uplinks}


def absent_uplinks(policy: Policy, interfaces: set[str]) -> list[str]:
    """Names of the uplinks allowed to be absent whose interface does not exist now."""
    return [u.name for u in policy.uplinks if u.may_be_absent and u.interface not in interfaces]
