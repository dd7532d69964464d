"""Which uplinks receive new flows: tiers, weights and the up/down set (pure).

Shared by both ruleset backends through ``ruleset/plan.py``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from math import gcd

from ..errors import ValidationError
from ..model import vocabulary as vocab
from ..model.policy import STATES, Pin, Policy, Uplink, ipv6_groups


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


def effective_states(policy: Policy, states: dict[str, str] | None = None) -> dict[str, str]:
    """Uplink name -> up/down, with the failover hook's overrides applied."""
    out = {u.name: u.state for u in policy.uplinks}
    for name, state in (states or {}).items():
        if name not in out:
            raise ValidationError("states", name, "the name of a configured uplink")
        out[name] = vocab.choice(f"states[{name}]", state, STATES)
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
    if not pool:
        return Choice(policy.mode, ())
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


def _choice_among(policy: Policy, carriers: Sequence[Uplink], states: dict[str, str] | None) -> Choice:
    names = {u.name for u in carriers}
    sub = replace(policy, uplinks=tuple(carriers))
    return plan_choice(sub, {n: s for n, s in (states or {}).items() if n in names})


def carries_lan_ipv4(up: Uplink) -> bool:
    """Whether a LAN's (private) IPv4 source can leave by ``up``: only translated. Without
    NAT only the sources the uplink owns can, and those are marked for it directly."""
    return up.nat != "none"


def plan_choice_v4(policy: Policy, states: dict[str, str] | None = None) -> Choice:
    """The IPv4 new-flow choice: never an uplink that cannot carry a LAN's IPv4."""
    effective_states(policy, states)  # rejects unknown names
    return _choice_among(policy, [u for u in policy.uplinks if carries_lan_ipv4(u)], states)


def plan_choice_v6(
    policy: Policy, states: dict[str, str] | None = None
) -> list[tuple[ipaddress.IPv6Network, tuple[str, ...], Choice]]:
    """Per translated prefix: the uplinks translating it and the new-flow choice among them."""
    effective_states(policy, states)  # rejects unknown names
    out = []
    for inside, carriers in ipv6_groups(policy.uplinks):
        out.append((inside, tuple(u.name for u in carriers), _choice_among(policy, carriers, states)))
    return out


def active_pins(policy: Policy, states: dict[str, str] | None = None) -> list[Pin]:
    """Pins whose uplink is up; a pin to a down uplink follows the normal choice."""
    eff = effective_states(policy, states)
    if all(s == "down" for s in eff.values()):
        return list(policy.pins)
    return [p for p in policy.pins if eff[p.uplink] == "up"]
