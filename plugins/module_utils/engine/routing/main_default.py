"""A default route in ``main`` for the router's unmarked traffic, only when none exists.

An administrator's own default route is never replaced or removed.
"""
from __future__ import annotations

import json
from typing import Dict, List

from ..errors import EngineError
from ..runner import Runner


def _has_default(runner: Runner, family: int) -> bool:
    res = runner.run(["ip", f"-{family}", "-j", "route", "show", "table", "main", "default"])
    try:
        return bool(json.loads(res.stdout or "[]"))
    except ValueError as exc:
        raise EngineError(f"cannot parse 'ip -{family} -j route show default': {exc}") from exc


def ensure_main_default(local: Dict[str, str], runner: Runner, check: bool = False) -> dict:
    """``local``: {"uplink", "interface", "gateway"?, "gateway6"?} from the model."""
    commands: List[List[str]] = []
    for family, key in ((4, "gateway"), (6, "gateway6")):
        gateway = local.get(key)
        if gateway and not _has_default(runner, family):
            commands.append(["ip", f"-{family}", "route", "add", "default", "via", gateway,
                             "dev", local["interface"]])
    if not check:
        for argv in commands:
            runner.run(argv)
    return {"changed": bool(commands), "commands": [" ".join(c) for c in commands]}
