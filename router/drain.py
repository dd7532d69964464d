"""``multihome drain UPLINK`` / ``undrain``: an operator takes an uplink out of rotation.

A drain is the third source of an uplink's state (``<uplink>.admin`` in the state
directory, which persists across reboots): the balancing treats the uplink as down for
new flows, but its conntrack entries are left alone so established flows finish on it.
"""
from __future__ import annotations

import time

from engine.failover.state import EventResult, handle_event, load_model, log_event
from engine.paths import Paths
from engine.runner import Runner


def _keep_flows(_mark: int, _mask: int, _runner: Runner) -> int:
    return 0


def set_drained(paths: Paths, runner: Runner, uplink: str, drained: bool) -> EventResult:
    result = handle_event(load_model(paths), uplink, "admin", "down" if drained else "up", time.time(),
                          paths, runner, delete_fn=_keep_flows)
    log_event(paths, result.line(), "multihome")
    return result
