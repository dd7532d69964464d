"""The HA part of ``multihome status``: the VRRP role keepalived last reported to the
transition script, the peer, and the health of conntrackd's sync link."""
from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Optional

from engine.runner import Runner

STATE_FILE = "/run/netops-multihome-ha.state"
CONNTRACKD = ["conntrackd", "-C", "/etc/conntrackd/conntrackd.conf"]
_UDP = re.compile(r"(\d+) Pckts sent\s+(\d+) Pckts recv")
_ERRORS = re.compile(r"(\d+) Error send\s+(\d+) Error recv")
_LOST = re.compile(r"Packets lost:\s+(\d+)")


def _role(path: str) -> str:
    try:
        with open(path, encoding="ascii") as fh:
            words = fh.read().split()
    except OSError:
        return "unknown"
    return words[0].lower() if words else "unknown"


def _link_up(runner: Runner, interface: str) -> bool:
    res = runner.run(["ip", "-j", "link", "show", "dev", interface], check=False)
    try:
        return res.rc == 0 and "LOWER_UP" in json.loads(res.stdout)[0].get("flags", [])
    except (ValueError, IndexError, AttributeError):
        return False


def collect(model: Dict[str, Any], runner: Runner, state_file: str = STATE_FILE) -> Optional[Dict[str, Any]]:
    ha = model.get("ha")
    if not ha:
        return None
    res = runner.run([*CONNTRACKD, "-s", "network"], check=False)
    running = res.rc == 0
    udp, errors, lost = _UDP.search(res.stdout), _ERRORS.search(res.stdout), _LOST.search(res.stdout)
    link = _link_up(runner, ha["sync_interface"])
    return {
        "role": _role(state_file), "peer": ha["peer"], "sync_interface": ha["sync_interface"],
        "sync": "ok" if running and link else ("link down" if running else "conntrackd not running"),
        "sync_packets": {"sent": int(udp.group(1)), "received": int(udp.group(2))} if udp else None,
        "sync_errors": int(errors.group(1)) + int(errors.group(2)) if errors else None,
        "sync_lost": int(lost.group(1)) if lost else None,
    }


def render_lines(status: Optional[Dict[str, Any]]) -> List[str]:
    if not status:
        return []
    return [f"ha: role={status['role']} peer={status['peer']} sync={status['sync']} "
            f"({status['sync_interface']}, lost={status['sync_lost']}, errors={status['sync_errors']})"]
