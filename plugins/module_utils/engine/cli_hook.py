"""Body of ``multihome-hook``, the script LSM runs on every state change."""
from __future__ import annotations

import os
import sys
from typing import List, Optional

from .errors import EngineError, ValidationError
from .failover import handle_event, load_model, log_event, uplink_names
from .hookargs import parse_lsm_args
from .paths import Paths
from .runner import Runner


# Not print(): ansible-test reserves print() for modules.
def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


IDENT = "multihome-hook"


def main(argv: List[str], paths: Optional[Paths] = None, runner: Optional[Runner] = None) -> int:
    paths = paths or Paths.default()
    try:
        model = load_model(paths)
        event = parse_lsm_args(argv, uplink_names(model))
    except (EngineError, ValidationError) as exc:
        # Refused input is quoted with repr() so control characters stay inert in the log.
        line = f"refused event: {exc} (argv={[a[:80] for a in argv[:20]]!r})"
        _log(paths, line)
        _err(line)
        return 2
    try:
        result = handle_event(model, event.name, "probe", event.state, event.at, paths, runner or Runner())
    except EngineError as exc:
        line = f"uplink={event.name} source=probe state={event.state} failed: {exc}"
        _log(paths, line)
        _err(line)
        return 1
    extra = f" lsm={event.reported}" if event.reported != event.state else ""
    _log(paths, f"{result.line()}{extra} process_ms={_process_ms()}")
    return 0


def _process_ms() -> str:
    """Wall time since this process started (includes the interpreter's start-up)."""
    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime", encoding="ascii") as fh:
            uptime = float(fh.read().split()[0])
        return f"{(uptime - start_ticks / os.sysconf('SC_CLK_TCK')) * 1000:.0f}"
    except (OSError, ValueError, IndexError):
        return "?"


def _log(paths: Paths, line: str) -> None:
    try:
        log_event(paths, line, IDENT)
    except OSError as exc:
        _err(f"{IDENT}: cannot write event log: {exc}")
