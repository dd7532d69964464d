"""``multihome drain`` survives a reboot: on a systemd-booted Debian router (the lab's
``systemd`` topology) the drained uplink stays out of rotation after a power cycle, with no
play run, until ``multihome undrain``."""
from __future__ import annotations

import collections
import json

import pytest
from harness import Lab, lab_name, wait_for

ISP1, ISP2 = "198.51.100.2", "198.51.100.6"
UNITS = ["netops-multihome-restore.service", "netops-multihome-monitor.service"]


def uplinks(lab: Lab) -> dict:
    data = json.loads(lab.run("r1", ["multihome", "status", "--json"]).stdout)
    return {u["name"]: (u["state"], u["reason"]) for u in data["uplinks"]}


@pytest.fixture(scope="module")
def node():
    lab = Lab(lab_name("mho", "r"), "systemd", "bookworm")
    lab.down()
    lab.up()
    try:
        done = lab.playbook()
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
        assert wait_for(lambda: uplinks(lab) == {"isp1": ("up", "ok"), "isp2": ("up", "ok")}, 15) is not None
        yield lab
    finally:
        lab.down()


def test_drained_uplink_stays_out_of_rotation_after_a_reboot_until_undrained(node) -> None:
    node.run("r1", ["multihome", "drain", "isp1"])
    assert set(node.flows("c1", 4, timeout=1.0)) == {ISP2}
    node.reboot()
    assert wait_for(lambda: node.run("r1", ["systemctl", "is-active", *UNITS], check=False).stdout.split()
                    == ["active", "active"], 30) is not None
    # LSM's first verdicts after the boot do not bring it back: the drain is its own source
    assert wait_for(lambda: "probe=up" in node.run(
        "r1", ["cat", "/var/lib/netops-multihome/state/isp2"], check=False).stdout, 20) is not None
    assert uplinks(node)["isp1"] == ("down", "admin-drained")
    assert set(node.flows("c1", 6, timeout=1.0)) == {ISP2}
    node.run("r1", ["multihome", "undrain", "isp1"])
    assert uplinks(node)["isp1"] == ("up", "ok")
    assert collections.Counter(node.flows("c1", 4, timeout=1.0)) == {ISP1: 2, ISP2: 2}
