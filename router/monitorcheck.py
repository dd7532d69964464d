"""Is the failover monitor really running, with one LSM per monitored uplink?

The role asks this at the end of a play (``multihome monitor --verify``) so a monitor
that crash-loops, or an LSM that keeps dying, fails the play instead of passing silently.
"""
from __future__ import annotations

import os
import time
from typing import Dict, List, Optional, Set

from engine.paths import Paths

from .lsmbinary import FLAVOURS


def _cmdline(pid: int) -> List[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return [a.decode("utf-8", "replace") for a in fh.read().split(b"\0") if a]
    except OSError:
        return []


def _mount_ns(pid: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return ""


def monitor_pids() -> List[int]:
    """Processes running ``multihome monitor --foreground`` (systemd or detached) that see
    this file system: a container or lab router sharing the PID namespace is not this router."""
    found = []
    ours = _mount_ns("self")
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _mount_ns(entry) == ours:
            argv = _cmdline(int(entry))
            if "monitor" in argv and "--foreground" in argv and any("multihome" in a for a in argv):
                found.append(int(entry))
    return sorted(found)


def lsm_children(monitor_pid: int, paths: Paths) -> Dict[str, int]:
    """uplink -> pid of each LSM the monitor runs (its config names the uplink)."""
    try:
        with open(f"/proc/{monitor_pid}/task/{monitor_pid}/children", encoding="ascii") as fh:
            children = [int(c) for c in fh.read().split()]
    except (OSError, ValueError):
        return {}
    prefix = os.path.join(paths.run_dir, "lsm-")
    out: Dict[str, int] = {}
    for pid in children:
        argv = _cmdline(pid)
        if not argv or os.path.basename(argv[0]) not in FLAVOURS or "--config" not in argv:
            continue
        conf = argv[argv.index("--config") + 1] if argv.index("--config") + 1 < len(argv) else ""
        if conf.startswith(prefix) and conf.endswith(".conf"):
            out[conf[len(prefix):-len(".conf")]] = pid
    return out


def problems(expected: Set[str], paths: Paths) -> List[str]:
    """What is wrong now: no monitor, several, or uplinks without a running LSM."""
    pids = monitor_pids()
    if len(pids) != 1:
        return ["no monitor process is running" if not pids else f"{len(pids)} monitors run: {pids}"]
    running = lsm_children(pids[0], paths)
    return [f"uplink {u}: no LSM running" for u in sorted(expected - set(running))]


def verify(expected: Set[str], paths: Paths, wait: float, settle: float = 2.0) -> Dict[str, object]:
    """Wait up to WAIT seconds for one monitor with every expected LSM, then require the
    same processes to still be there SETTLE seconds later (a crash loop restarts them)."""
    deadline = time.monotonic() + wait
    seen: Optional[tuple] = None
    found: List[str] = ["not checked"]
    while True:
        found = problems(expected, paths)
        if not found:
            pid = monitor_pids()[0]
            now = (pid, tuple(sorted(lsm_children(pid, paths).items())))
            if seen == now:
                return {"ok": True, "monitor_pid": pid, "lsm": dict(now[1]), "problems": []}
            seen = now
        else:
            seen = None
        if time.monotonic() >= deadline and seen is None:
            return {"ok": False, "problems": found}
        time.sleep(settle if not found else 0.2)
