"""The iptables scenario: the iptables backend is the one in force, nftables holds nothing of ours."""
from __future__ import annotations

import json


def test_iptables_backend_is_in_force_and_no_nft_table_of_ours(host) -> None:
    status = json.loads(host.check_output("/usr/local/sbin/multihome status --json"))
    assert status["backend"] == "iptables" and status["ruleset_in_sync"] is True
    for tool in ("iptables-save", "ip6tables-save"):
        mangle = host.check_output(f"{tool} -t mangle")
        assert "-A PREROUTING -j NETOPS_MH_PRE" in mangle, (tool, mangle)
        for uplink in status["uplinks"]:
            assert f"--set-xmark {uplink['mark']}/0xff00" in mangle, (tool, uplink["name"], mangle)
    assert "-A POSTROUTING -j NETOPS_MH_NAT" in host.check_output("iptables-save -t nat")
    assert host.run("nft list table inet netops_multihome").rc != 0
