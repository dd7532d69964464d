"""Cross-field address checks of the role variables that no single field shows.

A LAN prefix that overlaps an uplink's connected prefix (``198.51.100.0/24`` typed for
``192.168.1.0/24`` beside an uplink on ``198.51.100.0/30``), a monitor target inside a
LAN, or an NPTv6 outside prefix that is also a LAN's: none can be meant, and each would be
applied silently (the kernel accepts them). A gateway inside a LAN prefix is the first case:
a gateway always lies inside its uplink's prefix. Two LANs sharing addresses are refused too.
"""
from __future__ import annotations

import ipaddress
from typing import Any, Dict, List, Tuple

from ..errors import ValidationError

Named = Tuple[str, Any]  # (role option, ip_network or ip_address)


def _lan_prefixes(lans: List[Dict[str, Any]], option: str) -> List[Named]:
    return [(f"{option}[{i}].prefixes[{j}]", ipaddress.ip_network(p))
            for i, lan in enumerate(lans) for j, p in enumerate(lan["prefixes"])]


def _uplink_networks(uplinks: List[Dict[str, Any]], option: str) -> List[Named]:
    return [(f"{option}[{i}].{key}", ipaddress.ip_interface(up[key]).network)
            for i, up in enumerate(uplinks) for key in ("address", "address6") if key in up]


def _nptv6_outsides(uplinks: List[Dict[str, Any]], option: str) -> List[Named]:
    out = []
    for i, up in enumerate(uplinks):
        for j, item in enumerate(up.get("nptv6") or []):
            try:
                out.append((f"{option}[{i}].nptv6[{j}].outside", ipaddress.ip_network(item["outside"])))
            except (TypeError, KeyError, ValueError):
                continue  # malformed: the balancing policy names it
    return out


def check_addressing(uplinks: List[Dict[str, Any]], lans: List[Dict[str, Any]],
                     uplinks_option: str, lans_option: str) -> None:
    lan_nets = _lan_prefixes(lans, lans_option)
    for k, (lan_opt, lan_net) in enumerate(lan_nets):
        others = lan_nets[:k] + _uplink_networks(uplinks, uplinks_option) + _nptv6_outsides(
            uplinks, uplinks_option)
        for other_opt, other in others:
            if lan_net.version == other.version and lan_net.overlaps(other):
                raise ValidationError(
                    lan_opt, str(lan_net),
                    f"a prefix not overlapping {other_opt} ({other}): a LAN shares no "
                    "addresses with another LAN, an uplink's prefix or an NPTv6 outside prefix")
    for i, up in enumerate(uplinks):
        for t, target in enumerate(up.get("targets") or []):
            try:
                addr = ipaddress.ip_address(str(target))
            except ValueError:
                continue  # the targets' own check names it
            for lan_opt, lan_net in lan_nets:
                if addr.version == lan_net.version and addr in lan_net:
                    raise ValidationError(
                        f"{uplinks_option}[{i}].targets[{t}]", str(target),
                        f"an address a few hops upstream, not inside {lan_opt} ({lan_net})")
