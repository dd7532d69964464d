"""``multihome flows``: the conntrack entries per uplink (its mark), top talkers first.

Bytes and packets are the kernel's per-flow accounting (``net.netfilter.nf_conntrack_acct``);
when it is off the kernel keeps none and flows are listed without them.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List

from engine.runner import Runner

_FIELD = re.compile(r"(\w+)=(\S+)")


def parse_conntrack_line(line: str) -> Dict[str, Any]:
    """One ``conntrack -L`` line -> proto, the original tuple, mark, bytes and packets (both ways)."""
    words = line.split()
    proto = words[0] if words else ""
    fields: Dict[str, List[str]] = {}
    for key, value in _FIELD.findall(line):
        fields.setdefault(key, []).append(value)

    def first(key: str) -> str:
        return (fields.get(key) or [""])[0]

    # tcp lines carry the connection state after the timeout: "tcp 6 431999 ESTABLISHED src=..."
    state = words[3] if proto == "tcp" and len(words) > 3 and "=" not in words[3] else ""
    return {
        "proto": proto, "state": state, "src": first("src"), "dst": first("dst"), "sport": first("sport"),
        "dport": first("dport"), "mark": int(first("mark") or 0),
        "bytes": sum(int(v) for v in fields.get("bytes", [])),
        "packets": sum(int(v) for v in fields.get("packets", [])),
    }


def flows_by_uplink(runner: Runner, marks: Dict[str, int], mask: int, top: int) -> Dict[str, Any]:
    by_mark = {mark: name for name, mark in marks.items()}
    found: Dict[str, List[Dict[str, Any]]] = {name: [] for name in marks}
    for fam in ("ipv4", "ipv6"):
        for line in runner.run(["conntrack", "-L", "-f", fam], check=False).stdout.splitlines():
            flow = parse_conntrack_line(line)
            name = by_mark.get(flow["mark"] & mask)
            if name:
                found[name].append(flow)
    return {name: {"flows": len(flows), "bytes": sum(f["bytes"] for f in flows),
                   "top": sorted(flows, key=lambda f: (-f["bytes"], f["src"], f["sport"]))[:top]}
            for name, flows in found.items()}


def render_flows(view: Dict[str, Any]) -> str:
    lines = []
    for name, data in view.items():
        lines.append(f"{name}: {data['flows']} flows, {data['bytes']} bytes")
        for f in data["top"]:
            lines.append(f"  {f['proto']:5} {f['state']:11} {f['src']}:{f['sport']} -> "
                         f"{f['dst']}:{f['dport']}  {f['bytes']} bytes {f['packets']} packets")
    return "\n".join(lines) + "\n"
