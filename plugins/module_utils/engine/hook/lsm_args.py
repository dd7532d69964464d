"""Validation of the positional arguments LSM passes to its event script.

LSM runs ``eventscript STATE NAME CHECKIP DEVICE WARN_EMAIL REPLIED WAITING TIMEOUT
REPLY_LATE CONS_RCVD CONS_WAIT CONS_MISS AVG_RTT SRCIP PREVSTATE TIMESTAMP``; for a
group the per-probe fields are empty. Only STATE, NAME and TIMESTAMP matter here; every
argument is still checked so hostile input is refused and logged, never used.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Sequence

from ..errors import ValidationError
from ..model.vocabulary import NAME_RE

MAX_ARGS = 20
MAX_LEN = 64
SAFE = re.compile(r"^[A-Za-z0-9_.:@+-]*$")
STATE_MAP = {"up": "up", "down": "down", "long_down": "down"}


@dataclass(frozen=True)
class LsmEvent:
    state: str
    name: str
    at: float
    reported: str


def parse_lsm_args(argv: Sequence[str], known: Sequence[str]) -> LsmEvent:
    """``argv`` without the program name; ``known`` the configured LSM connection names
    (``<uplink>``, ``<uplink>.<n>``, ``<uplink>.<n>.degraded``: failover/probes.py)."""
    if not 2 <= len(argv) <= MAX_ARGS:
        raise ValidationError("arguments", len(argv), f"2 to {MAX_ARGS} positional arguments from LSM")
    for i, arg in enumerate(argv, 1):
        if len(arg) > MAX_LEN:
            raise ValidationError(f"argument {i}", arg[:MAX_LEN] + "...", f"at most {MAX_LEN} characters")
        if not SAFE.match(arg):
            raise ValidationError(f"argument {i}", arg, "only letters, digits and _ . : @ + -")
    reported, name = argv[0], argv[1]
    if reported not in STATE_MAP:
        raise ValidationError("state (argument 1)", reported, "one of " + ", ".join(STATE_MAP))
    if not NAME_RE.match(name.split(".", 1)[0]) or name not in known:
        raise ValidationError("name (argument 2)", name, "a configured LSM connection: " + ", ".join(known))
    at = time.time()
    if len(argv) >= 16 and argv[15]:
        if not argv[15].isdigit():
            raise ValidationError("timestamp (argument 16)", argv[15], "seconds since the epoch")
        # LSM's timestamp has one-second resolution: keep the sub-second part of now when
        # it is the same second, so two events in one second still order correctly.
        stamp = float(argv[15])
        at = at if int(at) == int(stamp) else stamp
    return LsmEvent(STATE_MAP[reported], name, at, reported)
