"""Monitor profiles: probe timing and the LSM thresholds they imply.

LSM declares a connection down after ``down_after`` consecutive lost probes and up
after more than ``up_after`` consecutive answered ones (the hold time). Its other test,
loss counted over the last 100 probes, is set so that it never delays a recovery beyond
the hold time and only fires on very heavy loss (at least ``LOSS_DOWN`` of 100). LSM
decides once a second and counts a probe still in flight as lost, so detection takes
``(down_after + 1) * interval`` plus up to one second; see docs/resilience.md for the
measured figures and the false-alarm arithmetic behind ``fast``.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping

from ..errors import ValidationError

PROFILES: Dict[str, Dict[str, int]] = {
    # Down 0.75-1.75 s after the cut, 2.5 s hold before taking flows again; with two
    # targets per uplink, 10 min of 20% loss both ways false-alarms with p ~ 2e-5.
    "fast": {"interval_ms": 50, "timeout_ms": 250, "down_after": 14, "up_after": 50},
    # ~6 s to declare down, 10 s hold: for links with bursty loss or high latency.
    "conservative": {"interval_ms": 1000, "timeout_ms": 1000, "down_after": 5, "up_after": 10},
}
LIMITS = {
    "interval_ms": (50, 60000),
    "timeout_ms": (50, 60000),
    "down_after": (1, 99),
    "up_after": (1, 99),
}
LOSS_WINDOW = 100
LOSS_DOWN = 80


def monitor_settings(profile: Any, overrides: Mapping[str, Any], option: str) -> Dict[str, Any]:
    """Profile values with per-uplink overrides, plus the LSM keys they imply."""
    if profile not in PROFILES:
        raise ValidationError("multihome_monitor_profile", profile, "one of " + ", ".join(PROFILES))
    if not isinstance(overrides, Mapping):
        raise ValidationError(option, overrides, "a dictionary of " + ", ".join(LIMITS))
    values = dict(PROFILES[profile])
    for key, raw in overrides.items():
        if key not in LIMITS:
            raise ValidationError(f"{option}.{key}", raw, "one of the keys " + ", ".join(LIMITS))
        low, high = LIMITS[key]
        if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
            raise ValidationError(f"{option}.{key}", raw, f"an integer from {low} to {high}")
        values[key] = raw
    min_loss = LOSS_WINDOW - values["up_after"]
    values["lsm"] = {
        "interval_ms": values["interval_ms"],
        "timeout_ms": values["timeout_ms"],
        "max_successive_pkts_lost": values["down_after"],
        "min_successive_pkts_rcvd": values["up_after"],
        "min_packet_loss": min_loss,
        "max_packet_loss": min(LOSS_WINDOW, max(LOSS_DOWN, min_loss + 5)),
    }
    return values
