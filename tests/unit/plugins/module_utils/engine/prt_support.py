"""Shared helpers of the routing-engine unit tests: fixtures, a scripted runner."""
from __future__ import annotations

import json
from pathlib import Path

from ansible_collections.netops.multihome.plugins.module_utils.engine.runner import CmdResult, Runner

HERE = Path(__file__).resolve().parent


def fixture(name: str) -> str:
    return (HERE / "fixtures" / name).read_text()


class ScriptedRunner(Runner):
    """Answers the read commands from captured ``ip -j`` output and records everything run."""

    def __init__(self, routes4: str = "[]", routes6: str = "[]", rules4: str = "", rules6: str = "",
                 addrs: str = "") -> None:
        self.out = {
            ("route", 4): routes4, ("route", 6): routes6,
            ("rule", 4): rules4 or fixture("rule4.json"), ("rule", 6): rules6 or fixture("rule6.json"),
        }
        self.addrs = addrs or fixture("addr.json")
        self.calls: list[tuple[list[str], str | None]] = []

    def run(self, argv, stdin=None, check=True) -> CmdResult:
        argv = list(argv)
        self.calls.append((argv, stdin))
        if argv[-2:] == ["address", "show"]:
            return CmdResult(0, self.addrs, "")
        fam = 6 if "-6" in argv else 4
        if "route" in argv and "show" in argv:
            return CmdResult(0, self.out[("route", fam)], "")
        if "rule" in argv and "show" in argv:
            return CmdResult(0, self.out[("rule", fam)], "")
        return CmdResult(0, "", "")

    def batches(self) -> list[tuple[list[str], str | None]]:
        return [(a, s) for a, s in self.calls if "-batch" in a]


def as_json(obj) -> str:
    return json.dumps(obj)
