"""Where the router keeps the model, the uplink states, the event log and runtime files.

``Paths.default(root)`` prefixes every path with ROOT so a test can use a scratch tree; the
environment never moves them (the hook runs as root).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Paths:
    model: str
    lsm_conf: str
    state_dir: str
    lock: str
    events: str
    run_dir: str
    hook: str

    @classmethod
    def default(cls, root: str = "") -> Paths:
        return cls(
            model=root + "/etc/netops-multihome/model.json",
            lsm_conf=root + "/etc/netops-multihome/lsm.conf",
            state_dir=root + "/var/lib/netops-multihome/state",
            lock=root + "/var/lib/netops-multihome/state.lock",
            events=root + "/var/log/netops-multihome/events.log",
            run_dir=root + "/run/netops-multihome",
            hook=root + "/usr/local/lib/netops-multihome/multihome-hook",
        )
