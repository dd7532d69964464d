"""The multihome role on the lab's router r1 through playbooks/site.yml, over SSH.

One lab for the module: converge, idempotence, balanced flows, router-originated
replies on the right uplink, LSM-driven failover and recovery, carrier loss, the hook's
refusal of hostile input. Everything is observed with real sockets in the namespaces.
"""
from __future__ import annotations

import collections
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from harness import wait_for

ROOT = Path(__file__).resolve().parents[2]
ISP1, ISP2 = "198.51.100.2", "198.51.100.6"


def recap(proc: subprocess.CompletedProcess) -> dict:
    found = re.search(r"r1\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", proc.stdout)
    assert found, proc.stdout[-3000:] + proc.stderr[-2000:]
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, found.groups())))


def status(lab) -> dict:
    return json.loads(lab.run("r1", ["multihome", "status", "--json"]).stdout)


def state_of(lab, uplink: str) -> str:
    return next(u["state"] for u in status(lab)["uplinks"] if u["name"] == uplink)


@pytest.fixture(scope="module")
def converged(lab):
    first = lab.playbook()
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    assert recap(first)["changed"] > 0
    # LSM reports its first verdicts once the hold time has passed.
    assert wait_for(lambda: "probe=up" in lab.run("r1", ["cat", "/var/lib/netops-multihome/state/isp2"],
                                                  check=False).stdout, 10)
    return lab


def test_second_run_changes_nothing(converged) -> None:
    again = converged.playbook()
    assert again.returncode == 0 and recap(again)["changed"] == 0, again.stdout[-3000:]


def test_check_mode_reports_no_change_on_a_converged_router(converged) -> None:
    checked = converged.playbook("--check", "--diff")
    assert checked.returncode == 0 and recap(checked)["changed"] == 0, checked.stdout[-3000:]


def test_package_module_runs_only_when_dpkg_reports_a_package_missing(converged) -> None:
    task = re.escape("TASK [netops.multihome.multihome : Install the router's packages]") + r" \*+\n"
    full = converged.playbook("-e", "multihome_fast_path=false")
    assert full.returncode == 0 and re.search(task + r"skipping: \[r1\]", full.stdout), full.stdout[-3000:]
    wanted = json.dumps({"multihome_fast_path": False,
                         "multihome_router_packages": ["iproute2", "netops-multihome-no-such-package"]})
    missing = converged.playbook("-e", wanted)
    assert missing.returncode != 0 and recap(missing)["failed"] == 1, missing.stdout[-3000:]
    failed_at = re.split(task, missing.stdout)[1].split("\nTASK [")[0]
    assert "No package matching 'netops-multihome-no-such-package'" in failed_at, failed_at


def test_new_flows_use_both_uplinks_and_nothing_is_spoofed(converged) -> None:
    lab = converged
    lab.reset_spoofed("isp1")
    lab.reset_spoofed("isp2")
    seen = collections.Counter(lab.flows("c1", 20) + lab.flows("c2", 20))
    assert seen[ISP1] >= 15 and seen[ISP2] >= 15, seen
    assert lab.spoofed("isp1") == 0 and lab.spoofed("isp2") == 0


def test_admin_reaching_either_uplink_address_gets_replies(converged) -> None:
    """A service on the router answers a client on the internet via the uplink the
    client used; without the from-rules the reply to isp2's address leaves by isp1."""
    lab = converged
    server = lab.popen("r1", [sys.executable, str(ROOT / "lab" / "traffic.py"), "serve", "--port", "5022",
                              "--log", "/tmp/mh-admin.log"])
    try:
        assert wait_for(lambda: "5022" in lab.run("r1", ["ss", "-Hltn"]).stdout, 5)
        for address in (ISP1, ISP2):
            cmd = [sys.executable, str(ROOT / "lab" / "traffic.py"), "flows", "--dst", address,
                   "--port", "5022", "--n", "3", "--timeout", "2"]
            answers = json.loads(lab.run("inet", cmd).stdout)
            assert not [a for a in answers if a.startswith("error")], (address, answers)
    finally:
        server.terminate()
        server.wait()


def test_sysctl_and_files(converged) -> None:
    lab = converged
    assert lab.run("r1", ["sysctl", "-n", "net.ipv4.conf.wan1.rp_filter"]).stdout.strip() == "2"
    assert lab.run("r1", ["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip() == "1"
    modes = lab.run("r1", ["stat", "-c", "%a %U", "/etc/netops-multihome/model.json",
                           "/etc/netops-multihome/lsm.conf"]).stdout.split("\n")
    assert modes[:2] == ["600 root", "600 root"]


def test_hook_refuses_hostile_arguments(converged) -> None:
    lab = converged
    proc = lab.run("r1", ["/usr/local/lib/netops-multihome/multihome-hook", "down", "isp1;touch /tmp/pwn"],
                   check=False)
    assert proc.returncode == 2
    assert lab.run("r1", ["test", "-e", "/tmp/pwn"], check=False).returncode == 1
    assert state_of(lab, "isp1") == "up"
    log = lab.run("r1", ["tail", "-n", "3", "/var/log/netops-multihome/events.log"]).stdout
    assert "refused event" in log


def test_upstream_cut_moves_new_flows_within_6s_back_within_10s_isp2_streams_never_stall(converged) -> None:
    lab = converged
    with lab.stream("c1", count=6, duration=14.0) as streams:
        time.sleep(1.0)
        lab.cut_upstream("isp1")
        took = wait_for(lambda: set(lab.flows("c1", 4, timeout=0.4)) == {ISP2}, 6.0)
        assert took is not None, "new flows did not move to isp2"
        assert state_of(lab, "isp1") == "down"
        time.sleep(2.0)
        lab.restore_upstream("isp1")
        back = wait_for(lambda: ISP1 in lab.flows("c1", 4, timeout=0.4), 10.0)
        assert back is not None, "isp1 did not come back into rotation"
    on_isp2 = [s for s in streams.reports if s["sources"] == [ISP2]]
    assert on_isp2, streams.reports
    for s in on_isp2:
        assert not s.get("error") and s["max_gap"] < 1.0, s
    events = lab.run("r1", ["grep", "source=probe state=down", "/var/log/netops-multihome/events.log"]).stdout
    last = events.strip().splitlines()[-1]
    assert "flows_deleted=" in last and "live=isp2" in last
    print(f"failover {took:.2f}s, failback {back:.2f}s, hook: {last}")


def test_carrier_loss_is_logged_and_new_flows_avoid_the_uplink(converged) -> None:
    """How fast is bench/failover.py's figure (0.02 s); here only that it happens."""
    lab = converged
    lab.carrier_down("isp2")
    try:
        took = wait_for(lambda: "isp2 source=carrier state=down" in lab.run(
            "r1", ["tail", "-n", "5", "/var/log/netops-multihome/events.log"]).stdout.replace("uplink=", ""),
            5.0, step=0.02)
        assert took is not None, "carrier loss not logged within 5 s"
        print(f"carrier loss logged after {took:.2f}s")
        assert set(lab.flows("c1", 4)) == {ISP1}
    finally:
        lab.carrier_up("isp2")
    assert wait_for(lambda: state_of(lab, "isp2") == "up", 10.0) is not None


def steady(reports: list) -> list:
    """The streams that failed, moved to another source or stalled for a second or more."""
    return [r for r in reports if r.get("error") or len(r["sources"]) != 1 or r["max_gap"] >= 1.0]


def test_status_reports_each_uplink_its_rules_and_live_flows_json_and_table_agree(converged) -> None:
    lab = converged
    # An earlier test's carrier loss may still be followed by LSM's own down/up verdicts.
    assert wait_for(lambda: all(u["state"] == "up" and "probe=up" in u["detail"]
                                for u in status(lab)["uplinks"]), 15.0) is not None
    with lab.stream("c1", count=4, duration=4.0):
        time.sleep(0.5)
        data = status(lab)
        table = lab.run("r1", ["multihome", "status"]).stdout
    assert {k: data[k] for k in ("backend", "mode", "failover", "ruleset_in_sync")} == {
        "backend": "nftables", "mode": "round_robin", "failover": True, "ruleset_in_sync": True}
    head = "backend=nftables mode=round_robin failover=on ruleset=in sync own-traffic=isp1"
    assert table.splitlines()[0] == head
    header = next(line.split() for line in table.splitlines() if line.startswith("UPLINK"))
    # the SINCE column holds spaces: count the columns after it from the end
    after = {h: i - len(header) for i, h in enumerate(header) if i > header.index("SINCE")}
    rows = {line.split()[0]: line.split() for line in table.splitlines() if line.startswith("isp")}
    assert [u["name"] for u in data["uplinks"]] == ["isp1", "isp2"]
    for uplink, interface in zip(data["uplinks"], ("wan1", "wan2")):
        name = uplink["name"]
        assert [uplink[k] for k in ("interface", "state", "weight", "tier")] == [interface, "up", 1, 1]
        # round robin: two of the four streams on each uplink (more if earlier entries linger)
        assert uplink["flows"] >= 2, uplink
        row = rows[name]
        assert row[1:3] == [interface, "up"], table
        assert [row[after["WEIGHT"]], row[after["TIER"]]] == ["1", "1"], table
        assert int(row[after["FLOWS"]]) >= 2, table
        rules = lab.run("r1", ["ip", "rule", "show", "table", str(uplink["table"])]).stdout
        assert f"fwmark {uplink['mark']}/0xff00" in rules, (name, rules)
        assert f"uplink={name} " in uplink["last_event"] and "probe=up" in uplink["detail"]


def test_ruleset_changed_behind_its_back_is_reported_and_multihome_apply_under_streams_stalls_none(
        converged) -> None:
    lab = converged
    with lab.stream("c1", count=6, duration=6.0) as streams:
        time.sleep(1.0)
        lab.run("r1", ["nft", "flush", "chain", "inet", "netops_multihome", "output"])
        assert status(lab)["ruleset_in_sync"] is False
        lab.run("r1", ["multihome", "apply"])
        assert status(lab)["ruleset_in_sync"] is True
        lab.run("r1", ["multihome", "apply"])
    assert {tuple(r["sources"]) for r in streams.reports} == {(ISP1,), (ISP2,)}
    assert steady(streams.reports) == []


def test_rerun_with_isp1_weight_3_sends_3_of_4_new_flows_to_isp1_streams_never_stall(converged) -> None:
    lab = converged
    inventory = yaml.safe_load((lab.inventory / "host_vars" / "r1.yml").read_text())
    weighted = [dict(u, weight=3 if u["name"] == "isp1" else u["weight"])
                for u in inventory["multihome_uplinks"]]
    try:
        with lab.stream("c1", count=6, duration=900.0) as streams:
            rerun = lab.playbook("-e", json.dumps({"multihome_uplinks": weighted}))
            streams.end_early()
        assert rerun.returncode == 0 and recap(rerun)["changed"] > 0, rerun.stdout[-3000:]
        assert collections.Counter(lab.flows("c1", 40)) == {ISP1: 30, ISP2: 10}
        assert {tuple(r["sources"]) for r in streams.reports} == {(ISP1,), (ISP2,)}
        assert steady(streams.reports) == []
    finally:
        back = lab.playbook()
    assert back.returncode == 0, back.stdout[-3000:]


class AdminSession:
    """A real SSH session from the internet to one of r1's uplink addresses, printing a line
    every 0.2 s; records when each line arrived."""

    def __init__(self, lab, address: str) -> None:
        key = str(lab.dir / "id_ed25519")
        self.proc = lab.popen("inet", ["ssh", "-i", key, "-p", "2222", "-o", "BatchMode=yes",
                                       "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                                       "-o", "LogLevel=ERROR", f"root@{address}",
                                       "while :; do echo tick; sleep 0.2; done"])
        self.arrivals: list = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for _line in self.proc.stdout:
            self.arrivals.append(time.monotonic())

    def max_gap(self, since: float) -> float:
        points = [t for t in self.arrivals if t >= since] + [time.monotonic()]
        return max(b - a for a, b in zip(points, points[1:]))

    def close(self) -> str:
        alive = self.proc.poll() is None
        self.proc.kill()
        _out, err = self.proc.communicate()
        return "" if alive else f"ended rc={self.proc.returncode}: {err}"


def test_admin_ssh_sessions_on_both_uplinks_survive_reconverge_failover_and_recovery(converged) -> None:
    lab = converged
    config = lab.dir / "r1" / "sshd_config"
    lab.run("r1", ["/usr/sbin/sshd", "-f", str(config), "-o", "Port=2222", "-o", f"ListenAddress={ISP1}",
                   "-o", f"ListenAddress={ISP2}", "-o", "PidFile=/run/sshd-admin.pid"])
    sessions = {}
    try:
        sessions = {isp: AdminSession(lab, addr) for isp, addr in (("isp1", ISP1), ("isp2", ISP2))}
        assert wait_for(lambda: all(len(s.arrivals) >= 3 for s in sessions.values()), 10), "no SSH session"
        start = time.monotonic()
        reconverge = lab.playbook("-e", "multihome_balance_mode=random")
        assert reconverge.returncode == 0 and recap(reconverge)["changed"] > 0, reconverge.stdout[-3000:]
        lab.cut_upstream("isp1")
        assert wait_for(lambda: state_of(lab, "isp1") == "down", 6.0) is not None
        lab.restore_upstream("isp1")
        restored = time.monotonic()
        assert wait_for(lambda: state_of(lab, "isp1") == "up", 10.0) is not None
        # The isp2 session never noticed; the isp1 one was cut with its ISP and carries on.
        assert sessions["isp2"].max_gap(start) < 1.0
        assert wait_for(lambda: any(t > restored for t in sessions["isp1"].arrivals), 15.0) is not None
        assert sessions["isp1"].max_gap(time.monotonic() - 2) < 1.0
    finally:
        ended = {isp: s.close() for isp, s in sessions.items()}
        lab.run("r1", ["sh", "-c", "kill $(cat /run/sshd-admin.pid)"], check=False)
    assert ended == {"isp1": "", "isp2": ""}
