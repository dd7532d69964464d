"""Putting one uplink back the way the model says after the kernel changed under it.

The monitor schedules an uplink here when its interface appears or comes back up, its
addresses change, or routes vanish from its table. Events are debounced (a burst of
them, such as an interface re-created with its addresses and routes, is one repair,
DEBOUNCE_S after the last event, never later than MAX_DELAY_S after the first); the
repair then touches that uplink only: its interface's kernel settings, its routing
table and rules, its LSM (restarted when the device or its addresses changed, so probes
leave from the current source), the carrier-up event that returns it to the balancing
once its table is in place and, for a new device or address, one immediate echo per
target whose first answer records the probe source up (first_probe.py).
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List, Optional

from engine.errors import EngineError
from engine.failover.state import all_states, handle_event, log_event, write_atomic
from engine.routing.own_traffic import apply_own_default
from engine.routing.sysctl import apply_sysctl
from engine.routing.table import apply_table

from . import first_probe

if TYPE_CHECKING:  # pragma: no cover
    from .monitor import Monitor

DEBOUNCE_S = 0.1
MAX_DELAY_S = 0.3
IDENT = "multihome-monitor"
RESTARTS_LSM = ("link", "address", "carrier")


@dataclass
class Pending:
    first: float
    last: float
    reasons: set
    carrier_up: bool = False


class Repairs:
    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.pending: Dict[str, Pending] = {}
        self.present: Dict[str, bool] = {}

    # -------------------------------------------------------------- what the model says
    def _routing(self, uplink: str) -> Optional[dict]:
        table = self.monitor.model["failover"]["uplinks"][uplink]["table"]
        return next((r for r in self.monitor.model.get("routing") or [] if r["id"] == table), None)

    @property
    def uplink_of_table(self) -> Dict[str, str]:
        """Both spellings ``ip monitor`` may print for an uplink's table: id and name."""
        out: Dict[str, str] = {}
        for name in self.monitor.names:
            routing = self._routing(name)
            if routing is not None:
                out[str(routing["id"])] = name
                out[routing["name"]] = name
        return out

    def _sysctl(self, uplink: str) -> Dict[str, str]:
        conf = f"/conf/{self.monitor.iface_of[uplink]}/"
        return {k: v for k, v in (self.monitor.model.get("sysctl") or {}).items() if conf in k}

    # -------------------------------------------------------------- presence
    def _marker(self, uplink: str) -> str:
        return os.path.join(self.monitor.paths.state_dir, f"{uplink}.absent")

    def set_present(self, uplink: str, present: bool) -> None:
        """Record whether the uplink's interface exists; one log line when that changes
        (the marker file carries it across monitor restarts)."""
        before = self.present.get(uplink)
        self.present[uplink] = present
        if before is None:
            before = not os.path.exists(self._marker(uplink))
        if before == present:
            return
        iface = self.monitor.iface_of[uplink]
        if present:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._marker(uplink))
            log_event(self.monitor.paths, f"uplink={uplink} interface={iface} appeared", IDENT)
            self.schedule(uplink, "link")
        else:
            write_atomic(self._marker(uplink), f"absent {time.time():.3f}\n")
            log_event(self.monitor.paths, f"uplink={uplink} interface={iface} absent (down until it appears)",
                      IDENT)
            self.pending.pop(uplink, None)
            self.monitor.stop_lsm(uplink)

    # -------------------------------------------------------------- scheduling
    def schedule(self, uplink: str, reason: str, carrier_up: bool = False) -> None:
        now = time.monotonic()
        got = self.pending.get(uplink)
        if got is None:
            self.pending[uplink] = Pending(now, now, {reason}, carrier_up)
        else:
            got.last = now
            got.reasons.add(reason)
            got.carrier_up = got.carrier_up or carrier_up

    def _due(self, p: Pending, now: float) -> float:
        return min(p.last + DEBOUNCE_S, p.first + MAX_DELAY_S) - now

    def timeout(self, idle: float) -> float:
        """How long the monitor's select() may wait before the next repair is due."""
        now = time.monotonic()
        return max(0.0, min([idle] + [self._due(p, now) for p in self.pending.values()]))

    def run_due(self) -> None:
        now = time.monotonic()
        for uplink in [u for u, p in self.pending.items() if self._due(p, now) <= 0]:
            self.repair(uplink, self.pending.pop(uplink))

    # -------------------------------------------------------------- the repair
    def repair(self, uplink: str, why: Pending) -> None:
        started = time.monotonic()
        if not self.present.get(uplink, True):
            return
        mon = self.monitor
        notes = []
        try:
            settings = apply_sysctl(self._sysctl(uplink))
            routing = self._routing(uplink)
            table = apply_table(routing, mon.runner) if routing is not None else {"changed": False}
            notes.append(f"table={'repaired' if table['changed'] else 'unchanged'}")
            own = apply_own_default(mon.model, all_states(mon.paths, mon.names), mon.runner)
            if own["changed"]:
                notes.append(f"own_traffic={own['uplink']}")
            if settings["changed"]:
                notes.append("sysctl=set")
        except EngineError as exc:
            notes.append(f"failed: {exc}")
        if why.reasons & set(RESTARTS_LSM) and mon.model["failover"].get("enabled", True):
            mon.restart_lsm(uplink)
            notes.append("lsm=restarted")
        log_event(mon.paths, f"uplink={uplink} repair reasons={','.join(sorted(why.reasons))} "
                             f"{' '.join(notes)} ms={(time.monotonic() - started) * 1000:.0f}", IDENT)
        if why.carrier_up and mon.carrier.get(uplink):
            mon._event(uplink, True)
        targets = mon.model["failover"]["uplinks"][uplink].get("targets") or []
        if why.reasons & set(RESTARTS_LSM) and targets and mon.model["failover"].get("enabled", True):
            threading.Thread(target=self._probe_now, args=(uplink, targets), daemon=True).start()

    def _probe_now(self, uplink: str, targets: List[str]) -> None:
        """Record the probe source up on the first answered echo (see first_probe.py)."""
        mon = self.monitor
        try:
            if not first_probe.answered(mon.iface_of[uplink], targets):
                return
            result = handle_event(mon.model, uplink, "probe", "up", time.time(), mon.paths, mon.runner)
            log_event(mon.paths, result.line() + " via=first-probe", IDENT)
        except (OSError, EngineError) as exc:
            log_event(mon.paths, f"uplink={uplink} first probe failed: {exc}", IDENT)
