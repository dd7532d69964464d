"""What ``multihome status`` reports: per uplink state, since when, weight, tier, live
flows (conntrack entries carrying its mark) and its last event."""
from __future__ import annotations

import os
import re
import time
from typing import Any, Dict, List, Optional

from engine.failover.state import uplink_names, uplink_state
from engine.paths import Paths
from engine.runner import Runner

from . import ha_status
from .monitor import read_carriers

_MARK = re.compile(r"\bmark=(\d+)")


def count_flows(runner: Runner, marks: Dict[str, int], mask: int) -> Dict[str, int]:
    counts = {name: 0 for name in marks}
    by_mark = {mark: name for name, mark in marks.items()}
    for fam in ("ipv4", "ipv6"):
        res = runner.run(["conntrack", "-L", "-f", fam], check=False)
        for line in res.stdout.splitlines():
            found = _MARK.search(line)
            if found:
                name = by_mark.get(int(found.group(1)) & mask)
                if name:
                    counts[name] += 1
    return counts


def last_events(paths: Paths, names: List[str], max_bytes: int = 65536) -> Dict[str, str]:
    out: Dict[str, str] = {}
    try:
        with open(paths.events, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return out
    for line in reversed(lines):
        found = re.search(r"\buplink=(\S+)", line)
        if found and found.group(1) in names and found.group(1) not in out:
            out[found.group(1)] = line
    return out


def collect(model: dict, paths: Paths, runner: Runner, drift: Optional[bool] = None) -> Dict[str, Any]:
    names = uplink_names(model)
    fo = model["failover"]["uplinks"]
    marks = {n: int(fo[n]["mark"]) for n in names}
    mask = int(model["balance"].get("mark_mask") or 0xFF00)
    flows = count_flows(runner, marks, mask)
    events = last_events(paths, names)
    uplinks = []
    links = read_carriers(runner)
    for up in model["balance"]["uplinks"]:
        state, since, detail = uplink_state(paths, up["name"])
        if up["interface"] not in links:
            state, detail = "absent", f"interface {up['interface']} does not exist"
        uplinks.append({
            "name": up["name"], "interface": up["interface"], "state": state,
            "since": since, "detail": detail, "weight": up.get("weight", 1),
            "tier": up.get("tier", 1), "mark": hex(marks[up["name"]]),
            "table": fo[up["name"]]["table"], "flows": flows[up["name"]],
            "last_event": events.get(up["name"], ""),
        })
    return {
        "backend": model["balance"].get("backend"), "mode": model["balance"].get("mode"),
        "failover": model["failover"].get("enabled"), "ruleset_in_sync": drift is None or not drift,
        "uplinks": uplinks, "ha": ha_status.collect(model, runner),
    }


def _age(since: Optional[float]) -> str:
    if since is None:
        return "-"
    secs = int(time.time() - since)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
    return f"{stamp} ({secs // 3600}h{secs % 3600 // 60:02d}m{secs % 60:02d}s ago)"


def render_text(status: Dict[str, Any]) -> str:
    head = (f"backend={status['backend']} mode={status['mode']} failover="
            f"{'on' if status['failover'] else 'off'} ruleset="
            f"{'in sync' if status['ruleset_in_sync'] else 'DRIFTED (run: multihome apply)'}")
    rows = [("UPLINK", "IFACE", "STATE", "SINCE", "WEIGHT", "TIER", "FLOWS")]
    for u in status["uplinks"]:
        rows.append((u["name"], u["interface"], u["state"], _age(u["since"]), str(u["weight"]),
                     str(u["tier"]), str(u["flows"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [head, *ha_status.render_lines(status.get("ha")), ""]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    events = [f"  {u['name']}: {u['last_event']}" for u in status["uplinks"] if u["last_event"]]
    if events:
        lines += ["", "last events:", *events]
    return "\n".join(lines) + "\n"
