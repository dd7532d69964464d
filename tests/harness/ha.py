"""HA pair helpers over the lab's `ha_pair` topology: roles, cutting a router, its daemons."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from harness import ROOT, Lab, wait_for

sys.path.insert(0, str(ROOT / "lab"))
import ha_pair
from addressing import build_plan

HA_SCRIPT = "/usr/local/lib/netops-multihome/multihome-ha"
CONNTRACKD = ["conntrackd", "-C", "/etc/conntrackd/conntrackd.conf"]
ROUTERS = ("r1", "r2")


def ha_role(lab: Lab, router: str) -> str:
    """The role keepalived last reported to the transition script (MASTER/BACKUP/FAULT)."""
    out = lab.run(router, ["cat", "/run/netops-multihome-ha.state"], check=False).stdout
    return out.split()[0] if out.strip() else "UNKNOWN"


def owns_virtual_addresses(lab: Lab, router: str) -> bool:
    vips = [v["virtual4"].split("/")[0] for part in ("lans", "uplinks")
            for v in lab.plan["ha"][part].values()]
    out = lab.run(router, ["ip", "-4", "-o", "addr", "show"]).stdout
    return all(f" {vip}/" in out for vip in vips)


def roles(lab: Lab) -> Dict[str, str]:
    return {r: ha_role(lab, r) for r in ROUTERS}


def master(lab: Lab) -> Optional[str]:
    found = [r for r in ROUTERS if ha_role(lab, r) == "MASTER" and owns_virtual_addresses(lab, r)]
    return found[0] if len(found) == 1 else None


def other(router: str) -> str:
    return ROUTERS[1 - ROUTERS.index(router)]


def wait_master(lab: Lab, router: str, timeout: float = 15) -> Optional[float]:
    """Seconds until ROUTER is master and owns the virtual addresses."""
    return wait_for(lambda: ha_role(lab, router) == "MASTER" and owns_virtual_addresses(lab, router), timeout)


def cut_router(lab: Lab, router: str, up: bool = False) -> None:
    """Every cable of ROUTER (ISPs, LAN, sync link) goes down at once, or comes back."""
    ha_pair.set_segment(lab.name, build_plan(lab.topology), router, up)


def cut_sync(lab: Lab, up: bool = False) -> None:
    ha_pair.set_sync(lab.name, "r1", up)


def external_cache(lab: Lab, router: str) -> str:
    """The peer's flows as ROUTER's conntrackd holds them (with their marks)."""
    return lab.run(router, [*CONNTRACKD, "-e"]).stdout


def daemon_pids(lab: Lab, router: str) -> List[int]:
    """keepalived's and conntrackd's processes in ROUTER's namespace (never the host's)."""
    out = subprocess.run(["ip", "netns", "pids", f"{lab.name}-{router}"], capture_output=True,
                         text=True, check=True).stdout
    pids = []
    for pid in map(int, out.split()):
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if comm in ("keepalived", "conntrackd"):
            pids.append(pid)
    return pids


def kill_daemons(lab: Lab, router: str) -> None:
    """keepalived and conntrackd on ROUTER die at once (SIGKILL: no clean-up, no goodbye
    advert, the virtual addresses stay configured on it)."""
    for pid in daemon_pids(lab, router):
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not daemon_pids(lab, router), 5)


def start_daemons(lab: Lab, router: str) -> None:
    lab.run(router, [HA_SCRIPT, "start"])


def marks(lab: Lab, router: str, port: int) -> Dict[int, int]:
    """Client port -> ct mark of ROUTER's kernel conntrack entries towards the server PORT."""
    out = lab.run(router, ["conntrack", "-L", "-p", "tcp", "--dport", str(port)], check=False).stdout
    found: Dict[int, int] = {}
    for line in out.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if "sport" in fields and "mark" in fields:
            found[int(line.split("sport=")[1].split()[0])] = int(fields["mark"])
    return found


def settle(seconds: float = 0.5) -> None:
    time.sleep(seconds)
