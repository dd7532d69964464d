"""An uplink's LSM connections and the quorum over their verdicts.

Each target of an uplink has its own LSM connection, and with ``degraded_when`` a second,
stricter one; LSM runs the hook for each with the connection's name:

| name | verdict of |
| --- | --- |
| ``<uplink>`` | the uplink's only target; with several, the uplink as a whole (the group |
| | of an LSM config an earlier release wrote, until the monitor reloads) |
| ``<uplink>.<n>`` | target n of several (reachability) |
| ``<uplink>.<n>.degraded`` | target n against the ``degraded_when`` thresholds |

A per-target verdict is recorded on its own (failover/state.py); the uplink's ``probe``
(or ``degraded``) source is down when at least ``down_targets`` (K) of its N targets are,
default N: down only when every target is, as with LSM's own any/all groups before.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, Optional

DEGRADED = "degraded"


@dataclass(frozen=True)
class Connection:
    uplink: str
    source: str  # "probe" or "degraded"
    target: Optional[int]  # 1-based; None: the uplink's verdict itself (one target)


def connection_name(uplink: str, source: str, target: int, targets: int) -> str:
    if source == DEGRADED:
        return f"{uplink}.{target}.{DEGRADED}"
    return uplink if targets == 1 else f"{uplink}.{target}"


def connections(model: dict) -> Dict[str, Connection]:
    """Every name LSM may run the hook with -> what its verdict is about."""
    out: Dict[str, Connection] = {}
    for uplink, info in sorted(model["failover"]["uplinks"].items()):
        count = len(info["targets"])
        out[uplink] = Connection(uplink, "probe", None)
        for n in range(1, count + 1):
            target = n if count > 1 else None
            out[connection_name(uplink, "probe", n, count)] = Connection(uplink, "probe", target)
            if info.get(DEGRADED):
                out[connection_name(uplink, DEGRADED, n, count)] = Connection(uplink, DEGRADED, n)
    return out


def down_targets(model: dict, uplink: str) -> int:
    """K: how many of the uplink's targets must be down for it to be (default: all)."""
    info = model["failover"]["uplinks"][uplink]
    return int(info["monitor"].get("down_targets") or len(info["targets"]) or 1)


def quorum(states: Iterable[Optional[str]], needed: int) -> str:
    """``down`` when at least NEEDED of the per-target STATES are (a target LSM has not
    reported on yet counts as not down)."""
    return "down" if sum(1 for s in states if s == "down") >= needed else "up"
