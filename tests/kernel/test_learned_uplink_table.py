"""An uplink table learned from the kernel (addressing dhcp/dynamic), on real interfaces in
a scratch network namespace: a point-to-point /32 with a peer, a DHCP-style default route
in main, renumbering, and an interface that is not there at all."""
from __future__ import annotations

import subprocess
from typing import Iterator

import pytest
from ansible_collections.netops.multihome.plugins.module_utils.engine.routing.table import apply_table
from ansible_collections.netops.multihome.plugins.module_utils.engine.runner import CmdResult, Runner
from harness import lab_name

NS = f"{lab_name('mht')}-learn"
TABLE = 3210
PARAMS = {"name": "mh_lte", "id": TABLE, "state": "present", "routes": [], "dev_may_be_absent": True,
          "learn_from": "wan9", "learn_priority": 2009,
          "rules": [{"priority": 3009, "oif": "wan9", "family": "ipv4"},
                    {"priority": 4009, "fwmark": 0x900, "fwmask": 0xFF00, "family": "ipv4"}]}


class NsRunner(Runner):
    def run(self, argv, stdin=None, check=True) -> CmdResult:
        return super().run(["ip", "netns", "exec", NS, *argv], stdin, check)


def ip(*args: str) -> str:
    return subprocess.run(["ip", "-n", NS, *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture()
def netns(tmp_path) -> Iterator[str]:
    subprocess.run(["ip", "netns", "add", NS], check=True)
    try:
        ip("link", "set", "lo", "up")
        yield str(tmp_path)
    finally:
        subprocess.run(["ip", "netns", "del", NS], check=False)


def table() -> str:
    """The table's IPv4 routes ('' when the kernel holds none: it then reports no table)."""
    return subprocess.run(["ip", "-n", NS, "-4", "route", "show", "table", str(TABLE)],
                          capture_output=True, text=True).stdout


def test_point_to_point_peer_becomes_the_gateway_and_renumbering_is_followed(netns) -> None:
    ip("link", "add", "wan9", "type", "veth", "peer", "name", "isp9")
    ip("address", "add", "100.64.9.2", "peer", "100.64.9.1/32", "dev", "wan9")
    ip("link", "set", "wan9", "up")
    ip("link", "set", "isp9", "up")
    apply_table(PARAMS, NsRunner(), etc_dir=netns, mapping_dirs=[netns])
    assert "default via 100.64.9.1 dev wan9 onlink" in table(), table()
    assert "from 100.64.9.2 lookup" in ip("-4", "rule", "show")
    ip("address", "flush", "dev", "wan9")
    ip("address", "add", "100.64.10.7", "peer", "100.64.10.1/32", "dev", "wan9")
    again = apply_table(PARAMS, NsRunner(), etc_dir=netns, mapping_dirs=[netns])
    assert again["changed"]
    assert "default via 100.64.10.1 dev wan9 onlink" in table() and "100.64.9." not in table(), table()
    rules = ip("-4", "rule", "show")
    assert "from 100.64.10.7 lookup" in rules and "100.64.9.2" not in rules, rules
    assert not apply_table(PARAMS, NsRunner(), etc_dir=netns, mapping_dirs=[netns])["changed"]


def test_the_default_route_a_dhcp_client_put_in_main_gives_the_gateway(netns) -> None:
    ip("link", "add", "wan9", "type", "veth", "peer", "name", "isp9")
    ip("address", "add", "10.77.0.20/24", "dev", "wan9")
    ip("link", "set", "wan9", "up")
    ip("link", "set", "isp9", "up")
    ip("route", "add", "default", "via", "10.77.0.1", "dev", "wan9", "proto", "dhcp", "metric", "1024")
    apply_table(PARAMS, NsRunner(), etc_dir=netns, mapping_dirs=[netns])
    routes = table()
    assert "default via 10.77.0.1 dev wan9" in routes and "10.77.0.0/24 dev wan9" in routes, routes
    assert "onlink" not in routes


def test_an_absent_interface_gets_rules_and_no_routes(netns) -> None:
    result = apply_table(PARAMS, NsRunner(), etc_dir=netns, mapping_dirs=[netns])
    assert result["changed"] and table() == ""
    assert "oif wan9 [detached] lookup" in ip("-4", "rule", "show")
    assert not apply_table(PARAMS, NsRunner(), etc_dir=netns, mapping_dirs=[netns])["changed"]
