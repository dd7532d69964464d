"""nftables backend: one dedicated table ``inet netops_multihome``, nothing else.

Per-packet cost does not grow with the number of uplinks, LANs or prefixes: a marked
flow's packets take one verdict-map lookup keyed by the masked ct mark (``restore``),
every other packet that is not new one accept; only new connections reach the LAN
prefix sets, the pin and owned-source interval maps and the choice.

Chains are rendered in the exact text ``nft list table`` prints and sets/maps are
compared element by element, so a re-apply with the same input finds no difference and
runs nothing. Every change is one ``nft -f -`` transaction. When only contents differ
(the failover hook changing the up/down set or the weights) only those chains are
flushed and refilled and those maps' elements replaced; ``prerouting`` and ``restore``
are untouched, so established flows never notice.
"""

from __future__ import annotations

import ipaddress
import shutil
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from ..errors import EngineError
from ..model.policy import Network, Policy, Uplink
from ..runner import Runner
from .backend import Step
from .choice import Choice
from .plan import RulesetPlan, of_family

FAMILY = "inet"
TABLE = "netops_multihome"
NFT = "nft"
HASH_SEED = 0x4D48
# Our marking chains run after conntrack (-200) and before iptables' mangle chains (-150,
# iptables-nft registers them at exactly that priority): at an equal priority the order
# would depend on which was loaded first. An administrator's mangle rules thus see our
# marks on every packet and may still override them deliberately.
PRIORITY = "mangle - 10"
_ADDR = {4: "ipv4_addr", 6: "ipv6_addr"}

Chains = dict[str, list[str]]


class NftObject(NamedTuple):
    kind: str  # chain, set or map
    header: tuple[str, ...]  # a base chain's "type ..." line; a set's type and flags
    body: tuple[str, ...]  # a chain's rules; a set's elements in canonical order


Table = dict[str, NftObject]


def _hex(value: int) -> str:
    return f"0x{value:08x}"


def _set_mark(expr: str, mark: int, mask: int) -> str:
    # nft folds "and ~mask or mark" into "& (~mask | mark) | mark" when listing.
    keep = (~mask & 0xFFFFFFFF) | mark
    return f"{expr} mark set {expr} mark & {_hex(keep)} | {_hex(mark)}"


def _net(net) -> str:
    # nft lists a host prefix as the bare address
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def _daddr(net) -> str:
    return ("ip daddr " if net.version == 4 else "ip6 daddr ") + _net(net)


def _saddr(net) -> str:
    return ("ip saddr " if net.version == 4 else "ip6 saddr ") + _net(net)


def mark_chain(up: Uplink) -> str:
    return f"mark_{up.name}"


def _goto(up: Uplink) -> str:
    return "goto " + mark_chain(up)


def restore_chain(up: Uplink) -> str:
    return f"restore_{up.name}"


def _vmap(slots: Sequence[str], policy: Policy) -> str:
    chains = {u.name: mark_chain(u) for u in policy.uplinks}
    return "{ " + ", ".join(f"{i} : goto {chains[s]}" for i, s in enumerate(slots)) + " }"


def choose_rules(policy: Policy, choice: Choice, family: int) -> list[str]:
    """The new-flow choice of one family; no slots: the flow stays unmarked."""
    n = len(choice.slots)
    if not n:
        return []
    vmap = _vmap(choice.slots, policy)
    if choice.mode == "round_robin":
        return [f"numgen inc mod {n} vmap {vmap}"]
    if choice.mode == "random":
        return [f"numgen random mod {n} vmap {vmap}"]
    # Without an explicit seed the kernel draws a random one per rule, and every refill of
    # the chain would move clients between uplinks.
    addr = "ip saddr" if family == 4 else "ip6 saddr"
    return [f"jhash {addr} mod {n} seed 0x{HASH_SEED:x} vmap {vmap}"]


def choose6_chain(index: int) -> str:
    return f"choose6_{index}"


def disjoint(entries: Iterable[tuple[Network, str]]) -> list[tuple[Network, str]]:
    """Interval map elements with first-match semantics: each prefix loses the addresses an
    earlier entry already covers (an interval map refuses overlapping elements)."""
    out: list[tuple[Network, str]] = []
    for net, verdict in entries:
        pieces = [net]
        for seen, _verdict in out:
            rest = []
            for piece in pieces:
                if not piece.overlaps(seen):
                    rest.append(piece)
                elif not piece.subnet_of(seen):  # type: ignore[arg-type]
                    rest += piece.address_exclude(seen)  # type: ignore[arg-type]
            pieces = rest
        out += [(p, verdict) for p in pieces]
    return out


def _address_set(nets: Iterable[Network], family: int) -> NftObject:
    collapsed = ipaddress.collapse_addresses(of_family(nets, family))  # type: ignore[type-var]
    header = (f"type {_ADDR[family]}", "flags interval")
    return NftObject("set", header, _elements(_net(n) for n in collapsed))


def _address_map(entries: Iterable[tuple[Network, str]], family: int) -> NftObject:
    mine = [(n, v) for n, v in entries if n.version == family]
    return NftObject("map", (f"type {_ADDR[family]} : verdict", "flags interval"),
                     _elements(f"{_net(n)} : {v}" for n, v in disjoint(mine)))


def _key_map(key_type: str, entries: dict[str, str]) -> NftObject:
    elements = _elements(f"{k} : {v}" for k, v in entries.items())
    return NftObject("map", (f"type {key_type} : verdict",), elements)


def render_objects(plan: RulesetPlan) -> Table:
    """The whole table. Per packet, only ``prerouting`` (and ``output``) run: one lookup of
    the masked ct mark in ``restore`` for a marked flow, one accept for any other packet
    that is not new; only new flows go on to the LAN sets, pins and the choice."""
    policy = plan.policy
    t: Table = {}
    t["restore"] = _key_map("mark", {_hex(up.mark): "goto " + restore_chain(up) for up in policy.uplinks})
    ingress: dict[str, str] = {}
    for up in policy.uplinks:
        ingress.setdefault(f'"{up.interface}"', "goto " + mark_chain(up))
    for name in policy.lan_interfaces:
        ingress.setdefault(f'"{name}"', "goto from_lan")
    t["ingress"] = _key_map("ifname", ingress)
    owned = [(n, _goto(up)) for n, up in plan.owned_sources]
    sources = [(p.source, _goto(p.uplink)) for p in plan.pins if p.source and not p.destination]
    for fam in (4, 6):
        t[f"unbalanced{fam}"] = _address_set(plan.unbalanced, fam)
        t[f"owned{fam}"] = _address_map(owned, fam)
        t[f"pins_source{fam}"] = _address_map(sources, fam)
    destinations = [(p.destination, _goto(p.uplink)) for p in plan.pins if p.destination and not p.source]
    t["pins_destination4"] = _address_map(destinations, 4)
    groups = [(g.inside, f"goto {choose6_chain(i)}") for i, g in enumerate(plan.groups)]
    t["translated6"] = _address_map(groups, 6)
    for name, lines in render_chains(plan).items():
        header = (lines[0],) if lines and lines[0].startswith("type ") else ()
        t[name] = NftObject("chain", header, tuple(lines[len(header):]))
    return t


def render_chains(plan: RulesetPlan) -> Chains:
    policy = plan.policy
    mask = policy.mask
    chains: Chains = {}
    for up in policy.uplinks:
        chains[restore_chain(up)] = [_set_mark("meta", up.mark, mask)]
        chains[mark_chain(up)] = [_set_mark("ct", up.mark, mask), _set_mark("meta", up.mark, mask)]

    # Only a new connection with no mark of ours is ever given one: a flow that existed
    # before the first apply, or was marked under another mask, keeps its path.
    chains["prerouting"] = [
        f"type filter hook prerouting priority {PRIORITY}; policy accept;",
        f"ct mark & {_hex(mask)} vmap @restore",
        "ct state != new accept",
        f"ct mark & {_hex(mask)} != {_hex(0)} accept",
        "iifname vmap @ingress",
    ]
    chains["output"] = [
        f"type route hook output priority {PRIORITY}; policy accept;",
        f"ct mark & {_hex(mask)} vmap @restore",
    ]
    # IPv6 has no rp_filter sysctl: drop new LAN flows whose source would not route back
    # out of the interface they came in on (a spoofed source), as rp_filter=1 does for IPv4.
    chains["from_lan"] = [
        "ip6 saddr != :: fib saddr . iif oif missing drop",
        "ip daddr @unbalanced4 accept",
        "ip6 daddr @unbalanced6 accept",
        "fib daddr type { local, broadcast, multicast } accept",
        "ip6 daddr fe80::/10 accept",
        "ip saddr vmap @owned4",
        "ip6 saddr vmap @owned6",
        "goto pins",
    ]
    # Source pins before destination pins. IPv6 is balanced only among the uplinks that
    # translate its prefix; an IPv6 source no uplink translates or owns is left unmarked
    # (the main table decides, as without the collection; iptables does the same).
    pins = ["ip saddr vmap @pins_source4", "ip6 saddr vmap @pins_source6", "ip daddr vmap @pins_destination4"]
    pins += [f"{_saddr(p.source)} {_daddr(p.destination)} goto {mark_chain(p.uplink)}"
             for p in plan.pins if p.source and p.destination]
    chains["pins"] = [*pins, "ip6 saddr vmap @translated6", "meta nfproto ipv6 accept", "goto choose"]
    chains["choose"] = choose_rules(policy, plan.choice, 4)
    for i, group in enumerate(plan.groups):
        chains[choose6_chain(i)] = choose_rules(policy, group.choice, 6)

    post = ["type nat hook postrouting priority srcnat; policy accept;"]
    post += [f"{_daddr(n)} return" for n in policy.bypass]
    for up in policy.uplinks:
        dev = f'oifname "{up.interface}"'
        if up.nat == "snat":
            post.append(f"{dev} meta nfproto ipv4 snat ip to {up.snat_address}")
        elif up.nat == "masquerade":
            post.append(f"{dev} meta nfproto ipv4 masquerade")
        for m in up.nptv6:
            post.append(f"{dev} snat ip6 prefix to ip6 saddr map {{ {m.inside} : {m.outside} }}")
    chains["postrouting"] = post

    if any(up.nptv6 for up in policy.uplinks):
        dnat = ["type nat hook prerouting priority dstnat; policy accept;"]
        for up in policy.uplinks:
            for m in up.nptv6:
                dnat.append(
                    f'iifname "{up.interface}" dnat ip6 prefix to ip6 daddr map {{ {m.outside} : {m.inside} }}'  # noqa: E501
                )
        chains["nptv6_in"] = dnat
        if policy.nptv6_inbound == "established":
            chains["nptv6_forward"] = nptv6_forward(policy)
    return chains


def nptv6_forward(policy: Policy) -> list[str]:
    """Only established/related traffic enters through a translation: NPTv6 gives every
    LAN host a public address, and nothing else would stop new connections to them."""
    rules = ["type filter hook forward priority filter; policy accept;"]
    for up in policy.uplinks:
        for m in up.nptv6:
            rules.append(f'iifname "{up.interface}" ip6 daddr {m.inside} ct state new drop')
    return rules


def _format_object(name: str, obj: NftObject) -> str:
    lines = list(obj.header)
    if obj.kind == "chain":
        lines += obj.body
    elif obj.body:
        lines.append("elements = { " + ", ".join(obj.body) + " }")
    body = "\n".join("\t\t" + ln for ln in lines)
    return f"\t{obj.kind} {name} {{\n{body}\n\t}}"


def format_table(objects: Table) -> str:
    """The table in ``nft list table`` syntax (sets and maps first, as nft lists them)."""
    order = sorted(objects, key=lambda n: objects[n].kind == "chain")
    blocks = [_format_object(n, objects[n]) for n in order]
    return f"table {FAMILY} {TABLE} {{\n" + "\n\n".join(blocks) + "\n}\n"


def parse_table(text: str) -> Table:
    """Objects of a ``nft list table`` listing; set and map elements in a canonical order."""
    found: dict[str, tuple[str, list[str], list[str]]] = {}
    current: str | None = None
    elements: list[str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if elements is not None:  # an element list nft wrapped over several lines
            elements.append(line)
            if line.endswith("}"):
                found[current][2].append(" ".join(elements))  # type: ignore[index]
                elements = None
            continue
        if not line or line.startswith("table ") or (line == "}" and current is None):
            continue
        head = line.split()
        if len(head) == 3 and head[0] in ("chain", "set", "map") and head[2] == "{":
            current = head[1]
            found[current] = (head[0], [], [])
        elif line == "}":
            current = None
        elif current is not None:
            kind, lines, elems = found[current]
            if kind != "chain" and line.startswith("elements = {"):
                if line.endswith("}"):
                    elems.append(line)
                else:
                    elements = [line]
            else:
                lines.append(line)
        else:
            raise EngineError(f"unexpected object in table {FAMILY} {TABLE}: {line}")
    out: Table = {}
    for name, (kind, lines, elems) in found.items():
        if kind == "chain":
            header = (lines[0],) if lines and lines[0].startswith("type ") else ()
            out[name] = NftObject(kind, header, tuple(lines[len(header):]))
        else:
            items = [e.strip() for text in elems for e in text[len("elements = {"):].rstrip("}").split(",")]
            out[name] = NftObject(kind, tuple(lines), _elements(items))
    return out


def _element_key(element: str) -> tuple:
    key = element.split(" : ")[0].strip()
    try:
        net = ipaddress.ip_network(key)
        return (0, net.version, int(net.network_address), net.prefixlen)
    except ValueError:
        pass
    if key.startswith("0x"):
        return (1, int(key, 16), 0, 0)
    return (2, key, 0, 0)


def _elements(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted((" ".join(e.split()) for e in items if e.strip()), key=_element_key))


def read_current(runner: Runner) -> str | None:
    """The current listing of our table, or None when it does not exist."""
    res = runner.run([NFT, "list", "table", FAMILY, TABLE], check=False)
    if res.rc != 0:
        if "No such file or directory" in res.stderr or "does not exist" in res.stderr:
            return None
        raise EngineError(f"nft list table {FAMILY} {TABLE} failed: {res.stderr.strip()}")
    return res.stdout


def _same_shape(have: Table, wanted: Table) -> bool:
    return have.keys() == wanted.keys() and all(
        (have[n].kind, have[n].header) == (wanted[n].kind, wanted[n].header) for n in wanted)


def plan(have: Table | None, wanted: Table | None) -> str | None:
    """The ``nft -f`` script turning the table the kernel has (parsed; None: none) into
    ``wanted`` (None: nothing to do).

    When only contents differ (the failover hook changing the up/down set or the weights),
    the changed chains are flushed and refilled and the changed maps get their elements
    replaced, all in one transaction."""
    if wanted is None:
        return None if have is None else f"delete table {FAMILY} {TABLE}\n"
    if have == wanted:
        return None
    if have is not None and _same_shape(have, wanted):
        lines, chains = [], {}
        for name, obj in wanted.items():
            if have[name] == obj:
                continue
            lines.append(f"flush {obj.kind} {FAMILY} {TABLE} {name}")
            if obj.kind == "chain":
                chains[name] = obj
            elif obj.body:
                lines.append(f"add element {FAMILY} {TABLE} {name} {{ {', '.join(obj.body)} }}")
        return "\n".join(lines) + "\n" + (format_table(chains) if chains else "")
    # Create-then-delete makes the delete valid whether or not the table exists; the
    # whole script is one transaction, so there is never a moment without the table.
    return f"table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n" + format_table(wanted)


def load(script: str, runner: Runner, test: bool = False) -> None:
    """One ``nft -f`` transaction; with ``test`` only checked (``nft -c``), nothing changes."""
    res = runner.run([NFT, *(["-c"] if test else []), "-f", "-"], stdin=script, check=False)
    if res.rc != 0:
        raise EngineError(f"nft rejected the ruleset: {res.stderr.strip()}")


def describe(have: Table | None, wanted: Table | None) -> list[str]:
    """What a plan changes, for people: one line per chain, set or map."""
    if have is None:
        return [f"create table {FAMILY} {TABLE}"] if wanted else []
    if wanted is None:
        return [f"delete table {FAMILY} {TABLE}"]
    out = [f"add {o.kind} {n}" for n, o in wanted.items() if n not in have]
    out += [f"replace {o.kind} {n}" for n, o in wanted.items() if n in have and have[n] != o]
    out += [f"delete {o.kind} {n}" for n, o in have.items() if n not in wanted]
    return out


# The table this process last saw in the kernel (None: none), and the nftables generation
# it saw it at; only kept for runners that can read the generation (``LocalRunner``).
_seen: tuple[int, Table | None] | None = None


class Nftables:
    """The nftables backend (see ``backend.Backend``): our one table."""

    label = "nftables"
    command = "nft -f -"
    atomic = True

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.generation: int | None = None  # when step() saw the table
        self.wanted: Table | None = None

    def may_hold_ours(self) -> bool:
        return shutil.which(NFT) is not None and read_current(self.runner) is not None

    def _have(self) -> Table | None:
        """Our table as the kernel has it: what this process last saw or loaded when no
        commit happened since (the generation says so), else listed and parsed."""
        global _seen
        self.generation = self.runner.nft_generation()
        if self.generation is not None and _seen is not None and _seen[0] == self.generation:
            return _seen[1]
        current = read_current(self.runner)
        have = parse_table(current) if current is not None else None
        _seen = (self.generation, have) if self.generation is not None else None
        return have

    def step(self, ruleset: RulesetPlan | None) -> Step:
        self.wanted = render_objects(ruleset) if ruleset is not None else None
        have = self._have()
        before = format_table(have) if have is not None else ""
        after = format_table(self.wanted) if self.wanted else ""
        return Step(self, before, after, plan(have, self.wanted), describe(have, self.wanted))

    def load(self, script: str, test: bool) -> None:
        global _seen
        if test:
            load(script, self.runner, test)
            return
        _seen = None
        load(script, self.runner, test)
        # Exactly one commit since step() read the generation: ours, so the kernel holds
        # what we loaded. Any other count: someone else committed too; list it next time.
        now = self.runner.nft_generation()
        if self.generation is not None and now == self.generation + 1:
            _seen = (now, self.wanted)

    def rollback(self, before: str) -> None:
        global _seen
        _seen = None
        current = read_current(self.runner)
        script = plan(parse_table(current) if current is not None else None,
                      parse_table(before) if before else None)
        if script:
            load(script, self.runner)
