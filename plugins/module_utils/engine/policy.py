"""Balancing model: uplinks, LANs, pins and bypass, validated from the module's params.

Everything here is pure: no kernel access. ``parse_policy`` turns the conntrack_balance
module's options into a :class:`Policy` or raises :class:`ValidationError` naming the
option, the value and what is allowed. ``plan_choice`` decides which uplinks receive new
flows (tiers, weights, up/down) and is shared by both ruleset backends.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from math import gcd
from typing import Union

from .errors import ValidationError

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

BACKENDS = ("nftables", "iptables")
MODES = ("round_robin", "random", "source_hash")
NAT_KINDS = ("masquerade", "snat", "none")
STATES = ("up", "down")
DEFAULT_MASK = 0xFF00
# Uplink and LAN names end up in chain names; iptables allows 28 characters and the
# longest chain we derive is "MH_MARK_" + name.
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,19}$")
IFNAME_RE = re.compile(r"^[^\s/\"']{1,15}$")
# Largest slot table (sum of reduced weights) a rule may carry.
MAX_SLOTS = 256


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


@dataclass(frozen=True)
class Choice:
    """Which uplink each slot of the new-flow selector sends to.

    ``slots`` has one uplink name per slot; the modes index it with a counter
    (round_robin), a random number (random) or a hash of the source address
    (source_hash), each modulo ``len(slots)``.
    """

    mode: str
    slots: tuple[str, ...]
    live: tuple[str, ...] = field(default=())
    all_down: bool = False


# ----------------------------------------------------------------------------- parsing


def _int(option: str, value: object, allowed: str) -> int:
    if isinstance(value, bool):
        raise ValidationError(option, value, allowed)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip(), 0)
        except ValueError:
            pass
    raise ValidationError(option, value, allowed)


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


def _choice(option: str, value: object, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValidationError(option, value, "one of " + ", ".join(allowed))
    return str(value)


def _name(option: str, value: object) -> str:
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise ValidationError(option, value, "a name of 1-20 letters, digits or '_' starting with a letter")
    return value


def _ifname(option: str, value: object) -> str:
    if not isinstance(value, str) or not IFNAME_RE.match(value):
        raise ValidationError(option, value, "a Linux interface name (1-15 characters)")
    return value


def _dicts(option: str, values: object) -> list[dict]:
    if values is None:
        return []
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, dict) for v in values):
        raise ValidationError(option, values, "a list of dictionaries")
    return list(values)


def _parse_mask(value: object) -> int:
    allowed = "a non-zero 32-bit mask such as 0xff00"
    mask = _int("mark_mask", DEFAULT_MASK if value is None else value, allowed)
    if mask <= 0 or mask > 0xFFFFFFFF:
        raise ValidationError("mark_mask", value, allowed)
    return mask


def _parse_nptv6(option: str, values: object) -> tuple[Nptv6, ...]:
    out = []
    for i, item in enumerate(_dicts(option, values)):
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
    name = _name(f"{opt}.name", item.get("name"))
    interface = _ifname(f"{opt}.interface", item.get("interface"))
    mark_allowed = f"a non-zero mark whose bits all lie inside mark_mask {mask:#x}"
    mark = _int(f"{opt}.mark", item.get("mark"), mark_allowed)
    if mark <= 0 or mark & ~mask & 0xFFFFFFFF or mark > 0xFFFFFFFF:
        raise ValidationError(f"{opt}.mark", item.get("mark"), mark_allowed)
    weight = _int(f"{opt}.weight", item.get("weight", 1), "an integer >= 0")
    if weight < 0:
        raise ValidationError(f"{opt}.weight", item.get("weight"), "an integer >= 0")
    tier = _int(f"{opt}.tier", item.get("tier", 1), "an integer >= 0")
    if tier < 0:
        raise ValidationError(f"{opt}.tier", item.get("tier"), "an integer >= 0")
    state = _choice(f"{opt}.state", item.get("state", "up"), STATES)
    nat = _choice(f"{opt}.nat", item.get("nat", "masquerade"), NAT_KINDS)
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
    )


def _parse_lan(i: int, item: dict) -> Lan:
    opt = f"lans[{i}]"
    name = _name(f"{opt}.name", item.get("name"))
    raw = item.get("interfaces")
    if raw is None and item.get("interface") is not None:
        raw = [item.get("interface")]
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, (list, tuple)) or not raw:
        raise ValidationError(f"{opt}.interfaces", raw, "a non-empty list of interface names")
    interfaces = tuple(_ifname(f"{opt}.interfaces[{j}]", v) for j, v in enumerate(raw))
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


def _unique(option: str, values: Iterable[tuple[int, object]], what: str) -> None:
    seen: dict[object, int] = {}
    for i, value in values:
        if value in seen:
            raise ValidationError(
                f"{option}[{i}].{what}",
                value if not isinstance(value, int) else hex(value),
                f"a {what} not already used by {option}[{seen[value]}]",
            )
        seen[value] = i


def _no_overlap(option: str, nets: list[tuple[str, Network]]) -> None:
    for a in range(len(nets)):
        for b in range(a + 1, len(nets)):
            (oa, na), (ob, nb) = nets[a], nets[b]
            if na.version == nb.version and na.overlaps(nb):  # type: ignore[arg-type]
                raise ValidationError(ob, str(nb), f"a prefix not overlapping {oa} ({na})")


def parse_policy(params: dict, interfaces: set[str] | None = None) -> Policy:
    """Validate the module's params; ``interfaces`` (if given) are the router's links."""
    backend = _choice("backend", params.get("backend") or "nftables", BACKENDS)
    mode = _choice("mode", params.get("mode") or "random", MODES)
    present = _choice("state", params.get("state") or "present", ("present", "absent"))
    mask = _parse_mask(params.get("mark_mask"))
    if present == "absent":
        return Policy(backend, mode, mask, (), (), present=False)

    raw_uplinks = _dicts("uplinks", params.get("uplinks"))
    if not raw_uplinks:
        raise ValidationError("uplinks", params.get("uplinks"), "at least one uplink")
    uplinks = tuple(_parse_uplink(i, u, mask) for i, u in enumerate(raw_uplinks))
    _unique("uplinks", enumerate(u.name for u in uplinks), "name")
    _unique("uplinks", enumerate(u.mark for u in uplinks), "mark")
    _unique("uplinks", enumerate(u.interface for u in uplinks), "interface")
    tiers = sorted({u.tier for u in uplinks})
    for tier in tiers:
        members = [u for u in uplinks if u.tier == tier]
        if all(u.weight == 0 for u in members):
            raise ValidationError(
                "uplinks[].weight",
                {u.name: u.weight for u in members},
                f"at least one weight > 0 in tier {tier}",
            )
        if sum(u.weight for u in members) > MAX_SLOTS:
            raise ValidationError(
                "uplinks[].weight",
                {u.name: u.weight for u in members},
                f"weights of tier {tier} summing to at most {MAX_SLOTS}",
            )
    lans = tuple(_parse_lan(i, item) for i, item in enumerate(_dicts("lans", params.get("lans"))))
    if not lans:
        raise ValidationError("lans", params.get("lans"), "at least one LAN")
    _unique("lans", enumerate(lan.name for lan in lans), "name")
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
    pins = tuple(_parse_pin(i, p, names) for i, p in enumerate(_dicts("pins", params.get("pins"))))
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

    if interfaces is not None:
        for i, up in enumerate(uplinks):
            if up.interface not in interfaces:
                raise ValidationError(
                    f"uplinks[{i}].interface", up.interface, "an interface that exists on the router"
                )
        for opt, name in lan_ifs:
            if name not in interfaces:
                raise ValidationError(opt, name, "an interface that exists on the router")

    return Policy(backend, mode, mask, uplinks, lans, pins, bypass, True)


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


# ---------------------------------------------------------------------- new-flow choice


def effective_states(policy: Policy, states: dict[str, str] | None = None) -> dict[str, str]:
    """Uplink name -> up/down, with the failover hook's overrides applied."""
    out = {u.name: u.state for u in policy.uplinks}
    for name, state in (states or {}).items():
        if name not in out:
            raise ValidationError("states", name, "the name of a configured uplink")
        out[name] = _choice(f"states[{name}]", state, STATES)
    return out


def weighted_sequence(weights: Sequence[tuple[str, int]]) -> list[str]:
    """Smooth weighted rotation: each name appears ``weight/g`` times, evenly interleaved."""
    active = [(n, w) for n, w in weights if w > 0]
    if not active:
        return []
    g = 0
    for _name, w in active:
        g = gcd(g, w)
    reduced = [(n, w // g) for n, w in active]
    total = sum(w for _name, w in reduced)
    current = {n: 0 for n, _weight in reduced}
    seq = []
    for _slot in range(total):
        for n, w in reduced:
            current[n] += w
        best = max(reduced, key=lambda item: current[item[0]])[0]
        current[best] -= total
        seq.append(best)
    return seq


def plan_choice(policy: Policy, states: dict[str, str] | None = None) -> Choice:
    """Slots of the new-flow selector for the current up/down set.

    Only the lowest-numbered tier that has a live uplink of weight > 0 gets new flows.
    With every uplink down, the top tier is kept in rotation as if all were up: sending
    flows somewhere is better than dropping them, and the routing tables decide.
    """
    eff = effective_states(policy, states)
    usable = [u for u in policy.uplinks if u.weight > 0]
    live = [u for u in usable if eff[u.name] == "up"]
    all_down = not live
    pool = live if live else usable
    tier = min(u.tier for u in pool)
    members = [u for u in usable if u.tier == tier]
    live_names = [u.name for u in pool if u.tier == tier]
    if policy.mode != "source_hash":
        seq = weighted_sequence([(u.name, u.weight) for u in members if u.name in live_names])
        return Choice(policy.mode, tuple(seq), tuple(live_names), all_down)
    # Hash over a table of every uplink of the tier so a client's slot does not depend on
    # who else is up; only slots of dead uplinks are handed to live ones.
    table = weighted_sequence([(u.name, u.weight) for u in members])
    heirs = weighted_sequence([(u.name, u.weight) for u in members if u.name in live_names])
    slots = []
    k = 0
    for owner in table:
        if owner in live_names:
            slots.append(owner)
        else:
            slots.append(heirs[k % len(heirs)])
            k += 1
    return Choice(policy.mode, tuple(slots), tuple(live_names), all_down)


def plan_choice_v6(
    policy: Policy, states: dict[str, str] | None = None
) -> list[tuple[ipaddress.IPv6Network, tuple[str, ...], Choice]]:
    """Per translated prefix: the uplinks translating it and the new-flow choice among them."""
    effective_states(policy, states)  # rejects unknown names
    out = []
    for inside, carriers in ipv6_groups(policy.uplinks):
        names = tuple(u.name for u in carriers)
        sub = replace(policy, uplinks=tuple(carriers))
        out.append((inside, names, plan_choice(sub, {n: s for n, s in (states or {}).items() if n in names})))
    return out


def active_pins(policy: Policy, states: dict[str, str] | None = None) -> list[Pin]:
    """Pins whose uplink is up; a pin to a down uplink follows the normal choice."""
    eff = effective_states(policy, states)
    if all(s == "down" for s in eff.values()):
        return list(policy.pins)
    return [p for p in policy.pins if eff[p.uplink] == "up"]
