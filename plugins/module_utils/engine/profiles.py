"""Monitor profiles: probe timing and the LSM thresholds they imply.

LSM declares a connection down after ``down_after`` consecutive lost probes and up
after more than ``up_after`` consecutive answered ones (the hold time). Its other test,
loss counted over the last 100 probes, is set so that it never delays a recovery beyond
the hold time and only fires on very heavy loss. LSM evaluates state about once a
second, so detection takes ``down_after * interval + timeout`` rounded up to that tick.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping

from .errors import ValidationError

PROFILES: Dict[str, Dict[str, int]] = {
    # ~1.4 s to declare down (median), 2.5 s hold before taking flows again.
    "fast": {"interval_ms": 100, "timeout_ms": 250, "down_after": 6, "up_after": 25},
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
        "max_packet_loss": min(LOSS_WINDOW, min_loss + 5),
    }
    return values
