"""Which interfaces exist and have carrier, and their byte and packet counters, as the
kernel says now."""
from __future__ import annotations

import json
from typing import Dict

from engine.errors import EngineError
from engine.runner import Runner


def read_carriers(runner: Runner) -> Dict[str, bool]:
    res = runner.run(["ip", "-j", "link", "show"])
    try:
        links = json.loads(res.stdout or "[]")
    except ValueError as exc:
        raise EngineError(f"cannot parse 'ip -j link show': {exc}") from exc
    return {link["ifname"]: "LOWER_UP" in link.get("flags", []) and "UP" in link.get("flags", [])
            for link in links}


def interface_counters(runner: Runner) -> Dict[str, dict]:
    """{interface: its `ip -s link` stats64 (rx/tx bytes, packets...)}; {} if unreadable."""
    res = runner.run(["ip", "-j", "-s", "link", "show"], check=False)
    try:
        return {link["ifname"]: link.get("stats64") or {} for link in json.loads(res.stdout or "[]")}
    except (ValueError, KeyError, TypeError):
        return {}
