"""``multihome drain UPLINK`` / ``undrain``: an operator takes an uplink out of rotation.

A drain is the third source of an uplink's state (``<uplink>.admin`` in the state
directory, which persists across reboots): the balancing treats the uplink as down for
new flows, but its conntrack entries are left alone so established flows finish on it
(``admin`` is a soft source: failover/state.py deletes flows only for probe or carrier).
The administrator's hooks run for the change like for any other, here in the operator's
command (it waits for them), not in the monitor.
"""
from __future__ import annotations

import time

from engine.failover.state import EventResult, handle_event, load_model, log_event
from engine.paths import Paths
from engine.runner import Runner

from .events import parse_event_line
from .operability import config_path, load_config
from .user_hooks import UserHooks, event_environment


def set_drained(paths: Paths, runner: Runner, uplink: str, drained: bool) -> EventResult:
    result = handle_event(load_model(paths), uplink, "admin", "down" if drained else "up", time.time(),
                          paths, runner)
    log_event(paths, result.line(), "multihome")
    event = parse_event_line(result.line())
    if event is not None and event.changed:
        def log(line: str) -> None:
            log_event(paths, line, "multihome")

        config = load_config(config_path(paths), log)
        UserHooks(str(config["hooks_dir"]), float(config["hook_timeout"]), log).run_all(  # type: ignore[arg-type]
            event_environment(event))
    return result
