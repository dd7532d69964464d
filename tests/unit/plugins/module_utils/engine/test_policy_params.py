"""Shared input for the balancing unit tests (imported by test_policy, test_nft, test_iptables)."""

from __future__ import annotations

import copy

BASE = {
    "backend": "nftables",
    "mode": "round_robin",
    "mark_mask": "0xff00",
    "uplinks": [
        {
            "name": "isp1",
            "interface": "wan1",
            "mark": "0x100",
            "weight": 2,
            "nat": "snat",
            "snat_address": "198.51.100.2",
        },
        {"name": "isp2", "interface": "wan2", "mark": "0x200", "weight": 1},
        {"name": "isp3", "interface": "wan3", "mark": "0x300", "weight": 1},
    ],
    "lans": [
        {"name": "lan1", "interfaces": ["lan1"], "prefixes": ["192.168.1.0/24"]},
        {"name": "lan2", "interfaces": ["lan2"], "prefixes": ["192.168.2.0/24"]},
    ],
    "pins": [{"uplink": "isp2", "destinations": ["203.0.113.0/24"]}],
    "bypass": ["10.0.0.0/8"],
}
# IPv6 on lan1: its ULA prefix translated by isp1 and isp2 (not isp3), and a prefix isp1 owns.
V6_UPLINKS = {
    0: {
        "nptv6": [{"inside": "fd00:0:1:1::/64", "outside": "2001:db8:101:ff::/64"}],
        "source_prefixes": ["2001:db8:101:1::/64"],
    },
    1: {"nptv6": [{"inside": "fd00:0:1:1::/64", "outside": "2001:db8:201:ff::/64"}]},
}
V6_LAN1 = ["192.168.1.0/24", "fd00:0:1:1::/64", "2001:db8:101:1::/64"]
INTERFACES = {"lo", "wan1", "wan2", "wan3", "lan1", "lan2"}


def params(**changes) -> dict:
    out = copy.deepcopy(BASE)
    out.update(changes)
    return out


def with_uplink(i: int, **changes) -> dict:
    out = params()
    out["uplinks"][i].update(changes)
    return out


def with_ipv6(**changes) -> dict:
    out = params(**changes)
    for i, extra in V6_UPLINKS.items():
        out["uplinks"][i].update(copy.deepcopy(extra))
    out["lans"][0]["prefixes"] = list(V6_LAN1)
    return out
