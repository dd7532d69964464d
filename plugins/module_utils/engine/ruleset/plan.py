"""What the balancing ruleset matches and marks, decided once for both backends.

A :class:`RulesetPlan` says, for the current up/down set: which destinations a LAN flow
may reach without being balanced (LAN prefixes, bypass), which sources an ISP owns
(always marked for it), the pins expanded over the IPv6 groups, and the new-flow choice
overall and per translated IPv6 prefix. ``nft.py`` and ``iptables.py`` only spell it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from ..model.policy import Network, Policy, Uplink
from .choice import Choice, active_pins, plan_choice_v4, plan_choice_v6


@dataclass(frozen=True)
class PinMatch:
    """New flows matching ``source`` and/or ``destination`` go to ``uplink``."""

    uplink: Uplink
    source: Network | None = None
    destination: Network | None = None

    @property
    def version(self) -> int:
        return (self.source or self.destination).version  # type: ignore[union-attr]


@dataclass(frozen=True)
class V6Group:
    """IPv6 new flows from ``inside`` are balanced among the uplinks translating it."""

    inside: ipaddress.IPv6Network
    carriers: tuple[str, ...]
    choice: Choice


@dataclass(frozen=True)
class RulesetPlan:
    policy: Policy
    choice: Choice
    groups: tuple[V6Group, ...]
    pins: tuple[PinMatch, ...]
    # LAN destinations and bypass: accepted unmarked, never balanced.
    unbalanced: tuple[Network, ...]
    # Sources an ISP owns (source_prefixes): always marked for that uplink.
    owned_sources: tuple[tuple[Network, Uplink], ...]


def of_family(nets: Iterable[Network], family: int) -> list[Network]:
    return [n for n in nets if n.version == family]


def _pin_matches(
    policy: Policy, states: dict[str, str] | None, groups: tuple[V6Group, ...]
) -> list[PinMatch]:
    """Per pin its sources, then its destinations; an IPv6 destination is reachable only
    from the translated prefixes of the pinned uplink (nothing else could leave by it)."""
    out = []
    for pin in active_pins(policy, states):
        up = policy.uplink(pin.uplink)
        out += [PinMatch(up, source=n) for n in pin.sources]
        for n in pin.destinations:
            if n.version == 4:
                out.append(PinMatch(up, destination=n))
            else:
                out += [PinMatch(up, g.inside, n) for g in groups if up.name in g.carriers]
    return out


def plan_ruleset(policy: Policy, states: dict[str, str] | None = None) -> RulesetPlan:
    groups = tuple(V6Group(inside, names, choice) for inside, names, choice in plan_choice_v6(policy, states))
    return RulesetPlan(
        policy=policy,
        choice=plan_choice_v4(policy, states),
        groups=groups,
        pins=tuple(_pin_matches(policy, states, groups)),
        unbalanced=(*policy.lan_prefixes, *policy.bypass),
        owned_sources=tuple((n, up) for up in policy.uplinks for n in up.source_prefixes),
    )
