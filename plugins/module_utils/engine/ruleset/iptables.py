"""iptables backend: own chains (``NETOPS_MH_*``) in mangle and nat, one jump from each built-in.

Ownership is by name: only chains whose name starts with ``NETOPS_MH_`` (the collection's
own name, which no other tool uses) are read, replaced or deleted; any other chain,
including an administrator's ``MH_*``, is never touched.

Rules are rendered exactly as ``iptables-save`` prints them, so the kernel's rules can
be compared with the wanted ones chain by chain. A change is one
``iptables-restore --noflush`` transaction per family (IPv4 via iptables, IPv6 via
ip6tables) that declares (and so flushes) only our changed chains; a built-in chain only
ever gets our single jump rule inserted or deleted, never flushed.

Semantics match the nftables backend: only a new connection with no mark of ours is
ever chosen. Round robin is an exact ``statistic --mode nth`` cascade: rule k of W slots
matches every (W-k)-th packet reaching it, so each cycle of W new flows visits every
slot once. Random is a cascade of conditional probabilities. source_hash uses the
``cluster`` match (a seeded jhash of the connection's source, modulo the slots), which
leaves the packet mark alone, so bits outside ``mark_mask`` are kept.
"""

from __future__ import annotations

import shutil

from ..errors import EngineError
from ..model.policy import MAX_IPTABLES_HASH_SLOTS, Policy, Uplink
from ..runner import Runner
from .backend import Step
from .choice import Choice
from .plan import RulesetPlan, of_family

PREFIX = "NETOPS_MH_"
HASH_SEED = 0x4D48  # fixed so a re-apply renders the same rule
MAX_HASH_SLOTS = MAX_IPTABLES_HASH_SLOTS  # the cluster match's node limit
# table -> chain -> rule lines ("-A CHAIN ...")
Tables = dict[str, dict[str, list[str]]]
# (table, built-in chain, our chain)
PRE, OUT, LAN, PINS, CHOOSE = (PREFIX + n for n in ("PRE", "OUT", "LAN", "PINS", "CHOOSE"))
NAT, NPT_IN, NPT_FORWARD = PREFIX + "NAT", PREFIX + "NPT_IN", PREFIX + "NPT_FORWARD"
HOOKS: tuple[tuple[str, str, str], ...] = (
    ("mangle", "PREROUTING", PRE),
    ("mangle", "OUTPUT", OUT),
    ("nat", "POSTROUTING", NAT),
    ("nat", "PREROUTING", NPT_IN),
    ("filter", "FORWARD", NPT_FORWARD),
)
TABLES = ("mangle", "nat", "filter")


def tools(family: int) -> tuple[str, str]:
    return ("iptables-save", "iptables-restore") if family == 4 else ("ip6tables-save", "ip6tables-restore")


def mark_chain(up: Uplink) -> str:
    return f"{PREFIX}MARK_{up.name}"


def _m(mark: int, mask: int) -> str:
    return f"{mark:#x}/{mask:#x}"


def _restore_mark(mask: int) -> str:
    return f"-j CONNMARK --restore-mark --nfmask {mask:#x} --ctmask {mask:#x}"


def _probability(p: float) -> str:
    # iptables stores round(p * 2^31) and prints it back with 11 decimals.
    return "%.11f" % (int(p * 0x80000000 + 0.5) / 0x80000000)


def choose_rules(policy: Policy, choice: Choice, family: int, chain: str = CHOOSE) -> dict[str, list[str]]:
    chains = {u.name: mark_chain(u) for u in policy.uplinks}
    slots = list(choice.slots)
    rules: list[str] = []
    if not slots:
        return {chain: rules}  # nothing can carry this family: the flow stays unmarked
    if choice.mode == "round_robin":
        w = len(slots)
        for k, name in enumerate(slots[:-1]):
            rules.append(f"-m statistic --mode nth --every {w - k} --packet 0 -g {chains[name]}")
        rules.append(f"-g {chains[slots[-1]]}")
    elif choice.mode == "random":
        weights: dict[str, int] = {}
        for name in slots:
            weights[name] = weights.get(name, 0) + 1
        remaining = len(slots)
        order = list(weights)
        for name in order[:-1]:
            rules.append(
                f"-m statistic --mode random --probability {_probability(weights[name] / remaining)}"
                f" -g {chains[name]}"
            )
            remaining -= weights[name]
        rules.append(f"-g {chains[order[-1]]}")
    else:
        if len(slots) > MAX_HASH_SLOTS:
            raise EngineError(
                f"source_hash on the iptables backend takes at most {MAX_HASH_SLOTS} slots (the sum of"
                f" the reduced weights of one tier), this policy needs {len(slots)}: lower the weights"
                " or use nftables"
            )
        for name in dict.fromkeys(slots):
            nodes = sum(1 << k for k, owner in enumerate(slots) if owner == name)
            rules.append(
                f"-m cluster --cluster-local-nodemask 0x{nodes:08x} --cluster-total-nodes {len(slots)}"
                f" --cluster-hash-seed 0x{HASH_SEED:08x} -g {chains[name]}"
            )
    return {chain: rules}


def choose6_chain(index: int) -> str:
    return f"{PREFIX}CHOOSE6_{index}"


def render_tables(plan: RulesetPlan, family: int) -> Tables:
    """IPv6 new flows are balanced per translated prefix among the uplinks translating it
    (``plan.groups``); other IPv6 is never balanced."""
    policy = plan.policy
    mask = policy.mask
    mangle: dict[str, list[str]] = {}
    # Only a new connection with no mark of ours is ever given one (see nft.py).
    pre = [
        f"-m connmark ! --mark {_m(0, mask)} {_restore_mark(mask)}",
        f"-m connmark ! --mark {_m(0, mask)} -j RETURN",
        "-m conntrack ! --ctstate NEW -j RETURN",
    ]
    pre += [f"-i {u.interface} -g {mark_chain(u)}" for u in policy.uplinks]
    pre += [f"-i {name} -g {LAN}" for name in policy.lan_interfaces]
    mangle[PRE] = pre

    lan: list[str] = []
    if family == 6:
        # IPv6 has no rp_filter sysctl: drop spoofed sources as rp_filter=1 does for IPv4.
        lan.append("! -s ::/128 -m rpfilter --invert -j DROP")
    lan += [f"-d {n} -j RETURN" for n in of_family(plan.unbalanced, family)]
    kinds = ("LOCAL", "BROADCAST", "MULTICAST") if family == 4 else ("LOCAL", "MULTICAST")
    lan += [f"-m addrtype --dst-type {k} -j RETURN" for k in kinds]
    if family == 6:
        lan.append("-d fe80::/10 -j RETURN")
    lan += [f"-s {n} -g {mark_chain(up)}" for n, up in plan.owned_sources if n.version == family]
    mangle[LAN] = [*lan, f"-g {PINS}"]

    pin_lines = []
    for pin in plan.pins:
        if pin.version == family:
            match = [f"-s {pin.source}"] if pin.source else []
            match += [f"-d {pin.destination}"] if pin.destination else []
            pin_lines.append(" ".join([*match, "-g", mark_chain(pin.uplink)]))
    if family == 4:
        mangle[PINS] = [*pin_lines, f"-g {CHOOSE}"]
        mangle.update(choose_rules(policy, plan.choice, family))
    else:
        pin_lines += [f"-s {group.inside} -g {choose6_chain(i)}" for i, group in enumerate(plan.groups)]
        mangle[PINS] = pin_lines
        for i, group in enumerate(plan.groups):
            mangle.update(choose_rules(policy, group.choice, family, choose6_chain(i)))
    for up in policy.uplinks:
        mangle[mark_chain(up)] = [
            f"-j MARK --set-xmark {_m(up.mark, mask)}",
            f"-j CONNMARK --set-xmark {_m(up.mark, mask)}",
        ]
    mangle[OUT] = [f"-m connmark ! --mark {_m(0, mask)} {_restore_mark(mask)}"]

    nat: dict[str, list[str]] = {}
    post: list[str] = []
    if family == 4:
        for up in policy.uplinks:
            if up.nat == "snat":
                post.append(f"-o {up.interface} -j SNAT --to-source {up.snat_address}")
            elif up.nat == "masquerade":
                post.append(f"-o {up.interface} -j MASQUERADE")
    else:
        for up in policy.uplinks:
            post += [f"-s {m.inside} -o {up.interface} -j NETMAP --to {m.outside}" for m in up.nptv6]
    if post:
        nat[NAT] = [f"-d {n} -j RETURN" for n in of_family(policy.bypass, family)] + post
    if family == 6 and any(up.nptv6 for up in policy.uplinks):
        nat[NPT_IN] = [
            f"-d {m.outside} -i {up.interface} -j NETMAP --to {m.inside}"
            for up in policy.uplinks
            for m in up.nptv6
        ]
    filters: dict[str, list[str]] = {}
    if family == 6 and policy.nptv6_inbound == "established":
        # Only established/related traffic enters through a translation (see nft.py).
        drops = [
            f"-d {m.inside} -i {up.interface} -m conntrack --ctstate NEW -j DROP"
            for up in policy.uplinks
            for m in up.nptv6
        ]
        if drops:
            filters[NPT_FORWARD] = drops
    tables = {"mangle": mangle, "nat": nat, "filter": filters}
    return {
        t: {c: [f"-A {c} {r}" for r in rules] for c, rules in chains.items()} for t, chains in tables.items()
    }


def format_tables(tables: Tables) -> str:
    """Readable text: our chains per table, in iptables-save syntax, plus the jumps."""
    out = []
    for table in TABLES:  # one order, whichever order iptables-save listed them in
        chains = tables.get(table, {})
        if not chains:
            continue
        out.append(f"*{table}")
        chains = dict(sorted(chains.items()))  # iptables-save lists chains sorted by name
        out += [f":{c} - [0:0]" for c in chains]
        for hook_table, builtin, ours in HOOKS:
            if hook_table == table and ours in chains:
                out.append(f"-A {builtin} -j {ours}")
        for lines in chains.values():
            out += lines
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""


def parse_save(text: str) -> tuple[Tables, dict[str, list[str]]]:
    """Our chains and our jump rules (table -> ["PREROUTING NETOPS_MH_PRE", ...]) from iptables-save."""
    tables: Tables = {}
    hooks: dict[str, list[str]] = {}
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
            tables.setdefault(table, {})
            hooks.setdefault(table, [])
        elif line.startswith(":" + PREFIX):
            tables[table][line[1:].split()[0]] = []
        elif line.startswith("-A "):
            parts = line.split()
            chain = parts[1]
            if chain.startswith(PREFIX):
                tables[table].setdefault(chain, []).append(line)
            elif len(parts) == 4 and parts[2] == "-j" and parts[3].startswith(PREFIX):
                hooks[table].append(f"{chain} {parts[3]}")
    return tables, hooks


def read_current(runner: Runner, family: int) -> str:
    """Every table in one ``iptables-save`` (one process, not one per table)."""
    save = tools(family)[0]
    res = runner.run([save], check=False)
    if res.rc != 0:
        raise EngineError(f"{save} failed: {res.stderr.strip()}")
    return res.stdout


def current_text(current: str) -> str:
    tables = parse_save(current)[0]
    return format_tables({t: c for t, c in tables.items() if c})


def plan(current: str, wanted: Tables | None) -> str | None:
    """The ``iptables-restore --noflush`` input turning current into wanted, or None."""
    have, hooks = parse_save(current)
    wanted = wanted or {}
    out: list[str] = []
    for table in TABLES:
        want = wanted.get(table, {})
        cur = have.get(table, {})
        jumps = hooks.get(table, [])
        refill = [c for c, rules in want.items() if cur.get(c) != rules]
        # Declaring a chain under --noflush creates or flushes it; all declarations come
        # first so rules may jump to chains declared later.
        lines = [f":{c} - [0:0]" for c in refill]
        for chain in refill:
            lines += want[chain]
        for hook_table, builtin, ours in HOOKS:
            if hook_table != table:
                continue
            present = jumps.count(f"{builtin} {ours}")
            needed = 1 if ours in want else 0
            lines += [f"-D {builtin} -j {ours}"] * max(0, present - needed)
            if needed and not present:
                lines.append(f"-I {builtin} 1 -j {ours}")
        obsolete = [c for c in cur if c not in want]
        lines += [f"-F {c}" for c in obsolete]
        lines += [f"-X {c}" for c in obsolete]
        if lines:
            out += [f"*{table}", *lines, "COMMIT"]
    return "\n".join(out) + "\n" if out else None


def load(script: str, runner: Runner, family: int, test: bool = False) -> None:
    """One ``iptables-restore --noflush`` transaction; ``test``: only checked (``--test``)."""
    restore = tools(family)[1]
    res = runner.run([restore, "--noflush", *(["--test"] if test else [])], stdin=script, check=False)
    if res.rc != 0:
        raise EngineError(f"{restore} rejected the rules: {res.stderr.strip()}")


def describe(current: str, wanted: Tables | None, family: int) -> list[str]:
    have, hooks = parse_save(current)
    wanted = wanted or {}
    out = []
    for table in TABLES:
        want, cur = wanted.get(table, {}), have.get(table, {})
        out += [f"{table}: add chain {c}" for c in want if c not in cur]
        out += [f"{table}: replace chain {c}" for c in want if c in cur and cur[c] != want[c]]
        out += [f"{table}: delete chain {c}" for c in cur if c not in want]
        for hook_table, builtin, ours in HOOKS:
            present = f"{builtin} {ours}" in hooks.get(table, [])
            if hook_table == table and (ours in want) != present:
                out.append(f"{table}: {'add' if ours in want else 'delete'} jump {builtin} -> {ours}")
    return out


class Iptables:
    """The iptables backend for one family (see ``backend.Backend``): our NETOPS_MH_* chains."""

    def __init__(self, runner: Runner, family: int) -> None:
        self.runner = runner
        self.family = family
        self.label = "iptables" if family == 4 else "ip6tables"
        self.command = f"{self.label}-restore --noflush"
        self.atomic = False  # each table is its own commit

    def may_hold_ours(self) -> bool:
        return shutil.which(tools(self.family)[0]) is not None

    def step(self, ruleset: RulesetPlan | None) -> Step:
        wanted = render_tables(ruleset, self.family) if ruleset is not None else None
        current = read_current(self.runner, self.family)
        return Step(self, current_text(current), format_tables(wanted or {}), plan(current, wanted),
                    describe(current, wanted, self.family))

    def load(self, script: str, test: bool) -> None:
        load(script, self.runner, self.family, test)

    def rollback(self, before: str) -> None:
        script = plan(read_current(self.runner, self.family), parse_save(before)[0])
        if script:
            load(script, self.runner, self.family)
