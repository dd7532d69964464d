"""What ``multihome status`` reports: per uplink state, since when, weight, tier, live
flows (conntrack entries carrying its mark), bytes in the last minute (traffic.py), its
last event and the health quality LSM reports for it and each of its targets (RTT, jitter,
loss: quality.py); and which uplink the router's own traffic leaves by."""
from __future__ import annotations

import os
import re
import time
from typing import Any, Dict, List, Optional

from engine.failover.state import uplink_names, uplink_state
from engine.paths import Paths
from engine.routing.own_traffic import current_uplink
from engine.runner import Runner

from . import ha_status
from .links import read_carriers
from .quality import read_quality, uplink_summary
from .reasons import reason_of, sources_of
from .traffic import read_traffic

# docs/status-schema.md: bump on any change that is not a new field.
SCHEMA_VERSION = 1

# Both families in one text, several times faster to produce and read than `conntrack -L`
# (whose printing dominates at 50 000 entries); absent when the kernel has no procfs for it.
CONNTRACK_PROC = "/proc/net/nf_conntrack"


def count_flows(runner: Runner, marks: Dict[str, int], mask: int,
                proc: str = CONNTRACK_PROC) -> Dict[str, int]:
    """Live conntrack entries per uplink, counted by masked mark in one pass."""
    per_mark: Dict[int, int] = {}
    for entry in _conntrack_text(runner, proc).split(" mark=")[1:]:
        end = entry.find(" ")
        value = int(entry[:end] if end >= 0 else entry.split()[0]) & mask
        per_mark[value] = per_mark.get(value, 0) + 1
    return {name: per_mark.get(mark, 0) for name, mark in marks.items()}


def _conntrack_text(runner: Runner, proc: str) -> str:
    try:
        with open(proc, encoding="ascii", errors="replace") as fh:
            return fh.read()
    except OSError:
        return "\n".join(runner.run(["conntrack", "-L", "-f", fam], check=False).stdout
                         for fam in ("ipv4", "ipv6"))


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
    quality = read_quality(paths)
    traffic = read_traffic(paths)
    for up in model["balance"]["uplinks"]:
        state, since, detail = uplink_state(paths, up["name"])
        if up["interface"] not in links:
            state, detail = "absent", f"interface {up['interface']} does not exist"
        uplinks.append({
            "name": up["name"], "interface": up["interface"], "state": state,
            "since": since, "detail": detail, "reason": reason_of(state, detail),
            "drained": sources_of(detail).get("admin") == "down", "weight": up.get("weight", 1),
            "tier": up.get("tier", 1), "mark": hex(marks[up["name"]]),
            "table": fo[up["name"]]["table"], "flows": flows[up["name"]],
            "last_event": events.get(up["name"], ""),
            **uplink_summary(quality.get(up["name"], [])),
            "targets": [_target_fields(t) for t in quality.get(up["name"], [])],
            "bytes_last_minute": traffic.get(up["name"]),
        })
    return {
        "schema_version": SCHEMA_VERSION,
        "backend": model["balance"].get("backend"), "mode": model["balance"].get("mode"),
        "failover": model["failover"].get("enabled"), "ruleset_in_sync": drift is None or not drift,
        "uplinks": uplinks, "ha": ha_status.collect(model, runner),
        "own_traffic": current_uplink(model, runner),
    }


TARGET_FIELDS = ("target", "connection", "state", "rtt_ms", "jitter_ms", "loss_pct", "probes",
                 "last_change", "sampled_at")


def _target_fields(entry: Dict[str, Any]) -> Dict[str, Any]:
    return {key: entry.get(key) for key in TARGET_FIELDS}


def _figure(value: Optional[float], unit: str) -> str:
    return "-" if value is None else f"{value:.3g}{unit}"


def _size(count: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if count >= scale:
            return f"{count / scale:.3g}{unit}B"
    return f"{count}B"


def _moved(moved: Optional[Dict[str, Any]]) -> str:
    return "-" if not moved else f"{_size(moved['rx'])}/{_size(moved['tx'])}"


def _age(since: Optional[float]) -> str:
    if since is None:
        return "-"
    secs = int(time.time() - since)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
    return f"{stamp} ({secs // 3600}h{secs % 3600 // 60:02d}m{secs % 60:02d}s ago)"


def render_text(status: Dict[str, Any]) -> str:
    head = (f"backend={status['backend']} mode={status['mode']} failover="
            f"{'on' if status['failover'] else 'off'} ruleset="
            f"{'in sync' if status['ruleset_in_sync'] else 'DRIFTED (run: multihome apply)'} "
            f"own-traffic={status['own_traffic'] or 'main'}")
    rows = [("UPLINK", "IFACE", "STATE", "REASON", "SINCE", "WEIGHT", "TIER", "FLOWS", "RX/TX(1m)", "RTT",
             "JITTER", "LOSS")]
    for u in status["uplinks"]:
        rows.append((u["name"], u["interface"], u["state"], u["reason"], _age(u["since"]), str(u["weight"]),
                     str(u["tier"]), str(u["flows"]), _moved(u["bytes_last_minute"]),
                     _figure(u["rtt_ms"], "ms"), _figure(u["jitter_ms"], "ms"), _figure(u["loss_pct"], "%")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [head, *ha_status.render_lines(status.get("ha")), ""]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    events = [f"  {u['name']}: {u['last_event']}" for u in status["uplinks"] if u["last_event"]]
    if events:
        lines += ["", "last events:", *events]
    return "\n".join(lines) + "\n"
