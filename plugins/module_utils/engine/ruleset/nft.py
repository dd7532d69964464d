"""nftables backend: one dedicated table ``inet netops_multihome``, nothing else.

The ruleset is rendered in the exact text ``nft list table`` prints, so the kernel's
listing can be compared with the wanted text chain by chain: a re-apply with the same
input finds no difference and runs nothing. Every change is one ``nft -f -``
transaction. When only chain contents differ (the failover hook changing the up/down
set or the weights) only those chains are flushed and refilled; the restore rules in
``prerouting`` are untouched, so established flows never notice.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence

from ..errors import EngineError
from ..model.policy import Policy, Uplink
from ..runner import Runner
from .backend import Step
from .choice import Choice
from .plan import RulesetPlan

FAMILY = "inet"
TABLE = "netops_multihome"
NFT = "nft"
HASH_SEED = 0x4D48

Chains = dict[str, list[str]]


def _hex(value: int) -> str:
    return f"0x{value:08x}"


def _set_mark(expr: str, mark: int, mask: int) -> str:
    # nft folds "and ~mask or mark" into "& (~mask | mark) | mark" when listing.
    keep = (~mask & 0xFFFFFFFF) | mark
    return f"{expr} mark set {expr} mark & {_hex(keep)} | {_hex(mark)}"


def _restore(up: Uplink, mask: int) -> str:
    return f"ct mark & {_hex(mask)} == {_hex(up.mark)} {_set_mark('meta', up.mark, mask)}"


def _net(net) -> str:
    # nft lists a host prefix as the bare address
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def _daddr(net) -> str:
    return ("ip daddr " if net.version == 4 else "ip6 daddr ") + _net(net)


def _saddr(net) -> str:
    return ("ip saddr " if net.version == 4 else "ip6 saddr ") + _net(net)


def mark_chain(up: Uplink) -> str:
    return f"mark_{up.name}"


def _vmap(slots: Sequence[str], policy: Policy) -> str:
    chains = {u.name: mark_chain(u) for u in policy.uplinks}
    return "{ " + ", ".join(f"{i} : goto {chains[s]}" for i, s in enumerate(slots)) + " }"


def choose_rules(policy: Policy, choice: Choice, families: tuple[int, ...] = (4, 6)) -> list[str]:
    n = len(choice.slots)
    vmap = _vmap(choice.slots, policy)
    if choice.mode == "round_robin":
        return [f"numgen inc mod {n} vmap {vmap}"]
    if choice.mode == "random":
        return [f"numgen random mod {n} vmap {vmap}"]
    # Without an explicit seed the kernel draws a random one per rule, and every refill of
    # the chain would move clients between uplinks.
    rules = {
        4: f"jhash ip saddr mod {n} seed 0x{HASH_SEED:x} vmap {vmap}",
        6: f"jhash ip6 saddr mod {n} seed 0x{HASH_SEED:x} vmap {vmap}",
    }
    return [rules[f] for f in families]


def choose6_chain(index: int) -> str:
    return f"choose6_{index}"


def pin_rules(plan: RulesetPlan) -> list[str]:
    """Pins, then IPv6 new flows to the choice of their translated prefix; IPv6 from
    anywhere else is left unmarked, never balanced onto an uplink that would send it
    with a source the ISP drops."""
    rules = []
    for pin in plan.pins:
        match = [_saddr(pin.source)] if pin.source else []
        match += [_daddr(pin.destination)] if pin.destination else []
        rules.append(" ".join([*match, "goto " + mark_chain(pin.uplink)]))
    if plan.groups:
        rules += [f"{_saddr(group.inside)} goto {choose6_chain(i)}" for i, group in enumerate(plan.groups)]
        rules.append("meta nfproto ipv6 accept")
    return [*rules, "goto choose"]


def render_chains(plan: RulesetPlan) -> Chains:
    policy = plan.policy
    mask = policy.mask
    chains: Chains = {}
    for up in policy.uplinks:
        chains[mark_chain(up)] = [_set_mark("ct", up.mark, mask), _set_mark("meta", up.mark, mask)]
    chains["choose"] = choose_rules(policy, plan.choice)
    for i, group in enumerate(plan.groups):
        chains[choose6_chain(i)] = choose_rules(policy, group.choice, (6,))
    chains["pins"] = pin_rules(plan)

    # IPv6 has no rp_filter sysctl: drop new LAN flows whose source would not route back
    # out of the interface they came in on (a spoofed source), as rp_filter=1 does for IPv4.
    from_lan = ["ct direction reply accept", "ip6 saddr != :: fib saddr . iif oif missing drop"]
    from_lan += [f"{_daddr(n)} accept" for n in plan.unbalanced]
    from_lan += ["fib daddr type { local, broadcast, multicast } accept", "ip6 daddr fe80::/10 accept"]
    from_lan += [f"{_saddr(n)} goto {mark_chain(up)}" for n, up in plan.owned_sources]
    chains["from_lan"] = [*from_lan, "goto pins"]

    pre = ["type filter hook prerouting priority mangle; policy accept;"]
    pre += [f"{_restore(up, mask)} accept" for up in policy.uplinks]
    pre.append(f"ct mark & {_hex(mask)} != {_hex(0)} accept")
    pre += [f'iifname "{up.interface}" ct direction original goto {mark_chain(up)}' for up in policy.uplinks]
    pre += [f'iifname "{name}" goto from_lan' for name in policy.lan_interfaces]
    chains["prerouting"] = pre

    chains["output"] = ["type route hook output priority mangle; policy accept;"] + [
        _restore(up, mask) for up in policy.uplinks
    ]

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
    return chains


def format_table(chains: Chains) -> str:
    """The table as ``nft list table`` prints it."""
    blocks = []
    for name, lines in chains.items():
        body = "\n".join("\t\t" + ln for ln in lines)
        blocks.append(f"\tchain {name} {{\n{body}\n\t}}")
    return f"table {FAMILY} {TABLE} {{\n" + "\n\n".join(blocks) + "\n}\n"


def parse_table(text: str) -> Chains:
    """Chains of a ``nft list table`` listing (name -> lines, header line first)."""
    chains: Chains = {}
    current: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("table ") or (line == "}" and current is None):
            continue
        if line.startswith("chain ") and line.endswith("{"):
            current = line[len("chain ") : -1].strip()
            chains[current] = []
        elif line == "}":
            current = None
        elif current is not None:
            chains[current].append(line)
        else:
            raise EngineError(f"unexpected object in table {FAMILY} {TABLE}: {line}")
    return chains


def read_current(runner: Runner) -> str | None:
    """The current listing of our table, or None when it does not exist."""
    res = runner.run([NFT, "list", "table", FAMILY, TABLE], check=False)
    if res.rc != 0:
        if "No such file or directory" in res.stderr or "does not exist" in res.stderr:
            return None
        raise EngineError(f"nft list table {FAMILY} {TABLE} failed: {res.stderr.strip()}")
    return res.stdout


def _headers(chains: Chains) -> dict[str, str]:
    return {n: (lines[0] if lines and lines[0].startswith("type ") else "") for n, lines in chains.items()}


def plan(current: str | None, wanted: Chains | None) -> str | None:
    """The ``nft -f`` script turning ``current`` into ``wanted`` (None: nothing to do)."""
    have = parse_table(current) if current is not None else None
    if wanted is None:
        return None if have is None else f"delete table {FAMILY} {TABLE}\n"
    if have == wanted:
        return None
    if have is not None and list(have) == list(wanted) and _headers(have) == _headers(wanted):
        changed = {n: lines for n, lines in wanted.items() if have[n] != lines}
        flushes = "".join(f"flush chain {FAMILY} {TABLE} {n}\n" for n in changed)
        return flushes + format_table(changed)
    # Create-then-delete makes the delete valid whether or not the table exists; the
    # whole script is one transaction, so there is never a moment without the table.
    return f"table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n" + format_table(wanted)


def load(script: str, runner: Runner, test: bool = False) -> None:
    """One ``nft -f`` transaction; with ``test`` only checked (``nft -c``), nothing changes."""
    res = runner.run([NFT, *(["-c"] if test else []), "-f", "-"], stdin=script, check=False)
    if res.rc != 0:
        raise EngineError(f"nft rejected the ruleset, nothing changed: {res.stderr.strip()}")


def describe(current: str | None, wanted: Chains | None) -> list[str]:
    """What a plan changes, for people: one line per chain."""
    have = parse_table(current) if current is not None else None
    if have is None:
        return [f"create table {FAMILY} {TABLE}"] if wanted else []
    if wanted is None:
        return [f"delete table {FAMILY} {TABLE}"]
    out = [f"add chain {n}" for n in wanted if n not in have]
    out += [f"replace chain {n}" for n in wanted if n in have and have[n] != wanted[n]]
    out += [f"delete chain {n}" for n in have if n not in wanted]
    return out


class Nftables:
    """The nftables backend (see ``backend.Backend``): our one table."""

    label = "nftables"
    command = "nft -f -"

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def may_hold_ours(self) -> bool:
        return shutil.which(NFT) is not None and read_current(self.runner) is not None

    def step(self, ruleset: RulesetPlan | None) -> Step:
        wanted = render_chains(ruleset) if ruleset is not None else None
        current = read_current(self.runner)
        after = format_table(wanted) if wanted else ""
        return Step(self, current or "", after, plan(current, wanted), describe(current, wanted))

    def load(self, script: str, test: bool) -> None:
        load(script, self.runner, test)
