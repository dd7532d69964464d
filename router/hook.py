"""Body of ``multihome-hook``, the script LSM runs on every state change.

``process`` validates and applies one event; the running monitor calls it for events
handed over its socket (``engine.hook.protocol``), ``main`` calls it when no monitor answers.
"""
from __future__ import annotations

import sys
from typing import List, Optional, Tuple

from engine.errors import EngineError, ValidationError
from engine.failover.probes import connections
from engine.failover.state import handle_event, load_model, log_event
from engine.hook.lsm_args import parse_lsm_args
from engine.paths import Paths
from engine.runner import LocalRunner, Runner


# Not print(): ansible-test reserves print() for modules.
def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


IDENT = "multihome-hook"


def process(argv: List[str], paths: Paths, runner: Runner, started: float, via: str = "") -> Tuple[int, str]:
    """Validate, record and apply one LSM event; log one line; return (rc, line).
    ``started``: when the hook process started on the boot clock (``protocol.boot_clock``):
    the event's place in the order of events, and the start of the logged latency."""
    from engine.hook.protocol import boot_clock

    try:
        model = load_model(paths)
        known = connections(model)
        event = parse_lsm_args(argv, list(known))
    except (EngineError, ValidationError) as exc:
        # Refused input is quoted with repr() so control characters stay inert in the log.
        line = f"refused event: {exc} (argv={[a[:80] for a in argv[:20]]!r})"
        _log(paths, line)
        return 2, line
    conn = known[event.name]
    try:
        result = handle_event(model, conn.uplink, conn.source, event.state, event.at, paths, runner,
                              seq=started, target=conn.target)
    except EngineError as exc:
        line = f"uplink={conn.uplink} source={conn.source} state={event.state} failed: {exc}"
        _log(paths, line)
        return 1, line
    extra = f" lsm={event.reported}" if event.reported != event.state else ""
    line = f"{result.line()}{extra}{via} process_ms={(boot_clock() - started) * 1000:.0f}"
    _log(paths, line)
    return 0, line


def main(argv: List[str], paths: Optional[Paths] = None, runner: Optional[Runner] = None) -> int:
    from engine.hook.protocol import process_started

    rc, line = process(argv, paths or Paths.default(), runner or LocalRunner(), process_started())
    if rc:
        _err(line)
    return rc


def _log(paths: Paths, line: str) -> None:
    try:
        log_event(paths, line, IDENT)
    except OSError as exc:
        _err(f"{IDENT}: cannot write event log: {exc}")
