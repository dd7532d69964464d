"""Monitor profiles: probe timing and the LSM thresholds they imply.

LSM declares a connection down after ``down_after`` consecutive lost probes and up
after more than ``up_after`` consecutive answered ones (the hold time). Its other test,
loss counted over the last 100 probes, is set so that it never delays a recovery beyond
the hold time and only fires on very heavy loss (at least ``LOSS_DOWN`` of 100). LSM
decides once a second and counts a probe still in flight as lost, so detection takes
``(down_after + 1) * interval`` plus up to one second; see docs/resilience.md for the
measured figures and the false-alarm arithmetic behind ``fast``.

Each target has its own LSM connection; the uplink is down when ``down_targets`` of its
targets are (default: all of them). ``degraded_when`` adds a stricter connection per
target: a reply later than ``rtt_ms`` counts as lost there, and ``loss_pct`` of the last
100 probes lost declares it degraded (docs/resilience.md, "Quorum and degraded").
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


def _bounded(option: str, raw: Any, low: int, high: int, what: str = "") -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
        raise ValidationError(option, raw, f"an integer from {low} to {high}{what}")
    return raw


def monitor_settings(profile: Any, overrides: Mapping[str, Any], option: str,
                     targets: int = 1) -> Dict[str, Any]:
    """Profile values with per-uplink overrides, plus the LSM keys they imply; ``targets``:
    how many targets the uplink has (``down_targets`` is 1 to that, default all)."""
    if profile not in PROFILES:
        raise ValidationError("multihome_monitor_profile", profile, "one of " + ", ".join(PROFILES))
    if not isinstance(overrides, Mapping):
        raise ValidationError(option, overrides, "a dictionary of " + ", ".join(LIMITS))
    values: Dict[str, Any] = dict(PROFILES[profile])
    targets = max(targets, 1)
    values["down_targets"] = targets
    for key, raw in overrides.items():
        if key == "down_targets":
            values[key] = _bounded(f"{option}.{key}", raw, 1, targets, f" (the uplink has {targets} targets)")
            continue
        if key not in LIMITS:
            raise ValidationError(f"{option}.{key}", raw,
                                  "one of the keys " + ", ".join([*LIMITS, "down_targets"]))
        values[key] = _bounded(f"{option}.{key}", raw, *LIMITS[key])
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


DEGRADED_KEYS = ("loss_pct", "rtt_ms")
# LSM counts a reply later than timeout_ms neither as answered nor as a loss in a row: it
# only times such probes out in its loss window, about one per decision second (measured
# with LSM 1.0.4, docs/resilience.md). A slow uplink is therefore caught by the window:
# this share of the last 100 probes, when degraded_when sets rtt_ms without loss_pct.
SLOW_PCT = 10


def degraded_settings(raw: Any, option: str, monitor: Mapping[str, Any]) -> Dict[str, Any]:
    """``degraded_when`` -> the thresholds and the LSM keys of the stricter connection per
    target; ``{}`` when not set (off). ``monitor``: the uplink's ``monitor_settings``."""
    if raw is None or raw == {}:
        return {}
    if not isinstance(raw, Mapping) or not raw:
        raise ValidationError(option, raw, "a dictionary with loss_pct and/or rtt_ms")
    for key in raw:
        if key not in DEGRADED_KEYS:
            raise ValidationError(f"{option}.{key}", raw[key], "one of the keys " + ", ".join(DEGRADED_KEYS))
    lsm = dict(monitor["lsm"])
    out: Dict[str, Any] = {}
    if raw.get("rtt_ms") is not None:
        # Beyond the profile's timeout a probe is lost and the uplink goes down instead.
        out["rtt_ms"] = _bounded(f"{option}.rtt_ms", raw["rtt_ms"], 1, monitor["timeout_ms"] - 1,
                                 " (below the monitor's timeout_ms, beyond which a probe is lost)")
        lsm["timeout_ms"] = out["rtt_ms"]
        lsm["max_packet_loss"], lsm["min_packet_loss"] = SLOW_PCT, SLOW_PCT // 2
    if raw.get("loss_pct") is not None:
        # Below the loss at which the uplink itself goes down; back at half of it (hysteresis).
        down = monitor["lsm"]["max_packet_loss"]
        out["loss_pct"] = _bounded(f"{option}.loss_pct", raw["loss_pct"], 1, down - 1,
                                   f" (percent of the last {LOSS_WINDOW} probes; {down} takes the uplink"
                                   " down)")
        lsm["max_packet_loss"] = out["loss_pct"]
        lsm["min_packet_loss"] = out["loss_pct"] // 2
    out["lsm"] = lsm
    return out
