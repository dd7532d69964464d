"""The failover hook's ruleset step reads only the wanted backend (its hot path)."""
from __future__ import annotations

import json
import shutil

from ansible_collections.netops.multihome.plugins.module_utils.engine.failover import state as failover
from ansible_collections.netops.multihome.plugins.module_utils.engine.ruleset import apply as balance
from ansible_collections.netops.multihome.plugins.module_utils.engine.runner import CmdResult, Runner

PARAMS = {
    "state": "present", "backend": "nftables", "mode": "round_robin", "mark_mask": "0xff00",
    "uplinks": [{"name": "isp1", "interface": "wan1", "mark": 256, "weight": 1, "tier": 1, "state": "up",
                 "nat": "masquerade", "snat_address": None, "nptv6": None, "source_prefixes": None},
                {"name": "isp2", "interface": "wan2", "mark": 512, "weight": 1, "tier": 1, "state": "up",
                 "nat": "masquerade", "snat_address": None, "nptv6": None, "source_prefixes": None}],
    "lans": [{"name": "lan1", "interfaces": ["lan1"], "prefixes": ["192.168.1.0/24"]}],
    "pins": [], "bypass": [],
}


class RecordingRunner(Runner):
    def __init__(self) -> None:
        self.argvs = []

    def run(self, argv, stdin=None, check=True):
        self.argvs.append(list(argv))
        if argv[:2] == ["ip", "-j"]:
            return CmdResult(0, json.dumps([{"ifname": n} for n in ("wan1", "wan2", "lan1")]), "")
        if argv[0] == "nft" and "list" in argv:
            return CmdResult(1, "", "Error: No such file or directory")
        return CmdResult(0, "", "")


def test_hook_apply_reads_no_iptables(monkeypatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda tool: "/usr/sbin/" + tool)
    hook, converge = RecordingRunner(), RecordingRunner()
    failover._default_apply(PARAMS, hook, {"isp1": "down", "isp2": "up"})
    balance.apply_policy(PARAMS, converge, states={"isp1": "down", "isp2": "up"})
    hook_tools = {argv[0] for argv in hook.argvs}
    converge_tools = {argv[0] for argv in converge.argvs}
    assert not any("tables" in t for t in hook_tools), hook.argvs
    assert {"iptables-save", "ip6tables-save"} <= converge_tools, converge.argvs
