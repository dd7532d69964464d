"""The role on routers that boot Debian with systemd as PID 1 (the lab's `systemd` topology:
systemd-nspawn in the router's network namespace), Debian 12 (LSM 1.0.4, `lsm`) and
Debian 13 (foolsm 1.0.21, `foolsm`).

One booted, converged node per release, shared by every test of that release (indirect
parametrisation of a module-scoped fixture). Tests run in file order on a node, so the
failover test runs on a node that has been rebooted by the test before it.
"""
from __future__ import annotations

import collections
import json
import re
import subprocess

import pytest
from harness import Lab, lab_name, wait_for

ISP1, ISP2 = "198.51.100.2", "198.51.100.6"
BOTH = ["bookworm", "trixie"]
LSM_OF = {"bookworm": "lsm", "trixie": "foolsm"}
UNITS = ["netops-multihome-restore.service", "netops-multihome-monitor.service"]


def recap(proc: subprocess.CompletedProcess) -> dict:
    found = re.search(r"r1\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", proc.stdout)
    assert found, proc.stdout[-3000:] + proc.stderr[-2000:]
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, found.groups())))


def status(lab: Lab) -> dict:
    return json.loads(lab.run("r1", ["multihome", "status", "--json"]).stdout)


def states(lab: Lab) -> dict:
    return {u["name"]: u["state"] for u in status(lab)["uplinks"]}


def sources(lab: Lab, n: int = 6) -> collections.Counter:
    return collections.Counter(lab.flows("c1", n, timeout=1.0))


@pytest.fixture(scope="module")
def node(request: pytest.FixtureRequest):
    release = request.param
    lab = Lab(lab_name("mhs", {"bookworm": "12", "trixie": "13"}[release]), "systemd", release)
    lab.down()
    lab.up()
    try:
        first = lab.playbook()
        assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
        assert recap(first)["changed"] > 0
        assert wait_for(lambda: states(lab) == {"isp1": "up", "isp2": "up"}, 15) is not None, status(lab)
        yield lab
    finally:
        lab.down()


@pytest.mark.parametrize("node", BOTH, indirect=True)
def test_role_takes_the_systemd_path_and_both_units_are_active(node) -> None:
    assert node.run("r1", ["systemctl", "is-active", *UNITS]).stdout.split() == ["active", "active"]
    assert node.run("r1", ["systemctl", "is-enabled", *UNITS]).stdout.split() == ["enabled", "enabled"]
    main_pid = node.run("r1", ["systemctl", "show", "-P", "MainPID", UNITS[1]]).stdout.strip()
    verified = json.loads(node.run("r1", ["multihome", "monitor", "--verify", "--wait", "5"]).stdout)
    assert str(verified["monitor_pid"]) == main_pid, verified
    # The no-init path (`multihome monitor --start`) would have left its pid file.
    assert node.run("r1", ["test", "-e", "/run/netops-multihome/monitor.pid"], check=False).returncode == 1


@pytest.mark.parametrize("node", BOTH, indirect=True)
def test_monitor_runs_the_installed_lsm_once_per_uplink(node) -> None:
    verified = json.loads(node.run("r1", ["multihome", "monitor", "--verify", "--wait", "5"]).stdout)
    assert sorted(verified["lsm"]) == ["isp1", "isp2"], verified
    for pid in verified["lsm"].values():
        exe = node.run("r1", ["readlink", f"/proc/{pid}/exe"]).stdout.strip()
        assert exe == f"/usr/sbin/{LSM_OF[node.release]}", exe
    other = "lsm" if LSM_OF[node.release] == "foolsm" else "foolsm"
    assert node.run("r1", ["test", "-e", f"/usr/sbin/{other}"], check=False).returncode == 1


@pytest.mark.parametrize("node", BOTH, indirect=True)
def test_status_shows_rtt_and_loss_from_this_release_lsm_dump_and_journal_keeps_its_events(node) -> None:
    # this release's LSM answers SIGUSR1 with a dump the monitor reads (journald owns /dev/log here)
    assert wait_for(lambda: all(u["rtt_ms"] for u in status(node)["uplinks"]), 15), status(node)
    for up in status(node)["uplinks"]:
        assert 0 < up["rtt_ms"] < 10 and up["loss_pct"] is not None and up["loss_pct"] <= 2, up
        assert all(t["state"] == "up" and t["probes"] > 0 for t in up["targets"]), up
    journal = node.run("r1", ["journalctl", "-b", "--no-pager", "-o", "cat"]).stdout
    assert re.search(r"link isp\d\.\d up event", journal), journal[-2000:]
    assert not re.search(r"name = isp\d", journal)  # the dumps the monitor asks for are not relayed


@pytest.mark.parametrize("node", BOTH, indirect=True)
def test_second_run_changes_nothing(node) -> None:
    again = node.playbook()
    assert again.returncode == 0 and recap(again)["changed"] == 0, again.stdout[-3000:]


@pytest.mark.parametrize("node", BOTH, indirect=True)
def test_new_flows_use_both_uplinks_and_nothing_is_spoofed(node) -> None:
    node.reset_spoofed("isp1")
    node.reset_spoofed("isp2")
    seen = collections.Counter(node.flows("c1", 20) + node.flows("c2", 20))
    assert seen[ISP1] >= 15 and seen[ISP2] >= 15, seen
    assert node.spoofed("isp1") == 0 and node.spoofed("isp2") == 0


@pytest.mark.parametrize("node", ["trixie"], indirect=True)
def test_play_fails_with_the_monitor_journal_while_no_lsm_can_run(node) -> None:
    """Debian 13 without a runnable LSM: the monitor unit crash-loops, so the play must
    fail and say why (it used to end with rc 0 and no failover at all)."""
    node.run("r1", ["systemctl", "stop", UNITS[1]])
    node.run("r1", ["mv", "/usr/sbin/foolsm", "/usr/sbin/foolsm.off"])
    try:
        failed = node.playbook()
        assert failed.returncode != 0 and recap(failed)["failed"] == 1, failed.stdout[-3000:]
        assert "The failover monitor is not running with one LSM per uplink" in failed.stdout
        assert "no Link Status Monitor found" in failed.stdout, failed.stdout[-3000:]
    finally:
        node.run("r1", ["mv", "/usr/sbin/foolsm.off", "/usr/sbin/foolsm"])
        node.run("r1", ["systemctl", "restart", UNITS[1]])
    node.run("r1", ["multihome", "monitor", "--verify", "--wait", "20"])


@pytest.mark.parametrize("node", BOTH, indirect=True)
def test_after_a_reboot_lan_flows_and_status_come_back_without_a_play(node) -> None:
    # A table of our own making shows that the kernel state is really new after the reboot.
    node.run("r1", ["nft", "add", "table", "inet", "before_reboot"])
    node.reboot()
    assert node.run("r1", ["nft", "list", "table", "inet", "before_reboot"], check=False).returncode != 0
    assert wait_for(lambda: set(sources(node)) == {ISP1, ISP2}, 30, step=0.2) is not None, sources(node)
    # The monitor's ExecStartPre applies the model again: it may still be activating.
    assert wait_for(lambda: node.run("r1", ["systemctl", "is-active", *UNITS], check=False).stdout.split()
                    == ["active", "active"], 30) is not None
    assert wait_for(lambda: states(node) == {"isp1": "up", "isp2": "up"}, 15) is not None, status(node)
    assert status(node)["ruleset_in_sync"] is True


@pytest.mark.parametrize("node", BOTH, indirect=True)
def test_upstream_cut_moves_new_flows_and_events_reach_the_journal(node) -> None:
    since = node.run("r1", ["date", "+%Y-%m-%d %H:%M:%S"]).stdout.strip()
    node.cut_upstream("isp1")
    try:
        assert wait_for(lambda: states(node)["isp1"] == "down", 15) is not None, status(node)
        assert set(sources(node, 10)) == {ISP2}
    finally:
        node.restore_upstream("isp1")
    assert wait_for(lambda: states(node)["isp1"] == "up", 15) is not None, status(node)
    assert set(sources(node, 10)) == {ISP1, ISP2}
    journal = node.run("r1", ["journalctl", "--no-pager", "-o", "cat", "--since", since,
                              "-t", "multihome-monitor", "-t", "multihome-hook"]).stdout
    assert re.search(r"uplink=isp1 source=probe state=down effective=up->down", journal), journal
    assert re.search(r"uplink=isp1 source=probe state=up effective=down->up", journal), journal
