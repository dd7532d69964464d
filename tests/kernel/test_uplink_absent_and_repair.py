"""Uplinks whose interface is absent, appears late or loses its routes, on the lab's r1
(three ISPs) converged by playbooks/site.yml (issue 12).

One lab and one converge: isp3's interface wan3 is deleted before the play and the
inventory marks it ``interface_may_be_absent``. The play succeeds, status shows isp3
``absent``, isp1 and isp2 balance and NAT; when wan3 is created the monitor repairs
isp3's table and starts its LSM, and isp3 takes new flows. Routes flushed from one
uplink's table come back without anyone running the play, and only that uplink is touched.
The router's own traffic leaves by the best live uplink and moves when it fails, while
the administrator's default route in main stays as it was.
"""
from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from harness import mhlab, wait_for

LAB_TOPOLOGY = "three_isp"
ROOT = Path(__file__).resolve().parents[2]
EVENTS = "/var/log/netops-multihome/events.log"
ISP1, ISP2, ISP3 = "198.51.100.2", "198.51.100.6", "198.51.100.10"


def statuses(lab) -> dict:
    out = lab.run("r1", ["multihome", "status", "--json"]).stdout
    return {u["name"]: u["state"] for u in json.loads(out)["uplinks"]}


def events(lab) -> list:
    return lab.run("r1", ["cat", EVENTS], check=False).stdout.splitlines()


def unplug(lab, isp: str = "isp3", router_if: str = "wan3") -> None:
    lab.run("r1", ["ip", "link", "del", router_if])


def plug(lab, isp: str = "isp3", router_if: str = "wan3") -> float:
    """Re-create the router's link to ISP as the lab built it; returns when it was created."""
    up = lab.uplink(isp)
    subprocess.run(["ip", "-n", mhlab.ns(lab.name, "r1"), "link", "add", router_if, "type", "veth",
                    "peer", "name", "r1", "netns", mhlab.ns(lab.name, isp)], check=True)
    created = time.time()
    lab.run(isp, ["ip", "addr", "add", up["gateway4"] + "/30", "dev", "r1"])
    lab.run(isp, ["ip", "addr", "add", up["gateway6"] + "/64", "dev", "r1", "nodad"])
    lab.run(isp, ["ip", "link", "set", "r1", "up"])
    lab.run("r1", ["ip", "addr", "add", up["address4"], "dev", router_if])
    lab.run("r1", ["ip", "addr", "add", up["address6"], "dev", router_if, "nodad"])
    lab.run("r1", ["ip", "link", "set", router_if, "up"])
    lab.run(isp, ["ip", "-6", "route", "replace", up["delegated6"], "via", up["address6"].split("/")[0]])
    return created


# The administrator's own state on r1, which converges and removal must leave as it was.
ADMIN_STATE = [
    ["nft", "add", "table", "inet", "admin"],
    ["nft", "add", "chain", "inet", "admin", "input",
     "{ type filter hook input priority 10; policy accept; }"],
    ["nft", "add", "rule", "inet", "admin", "input", "ip", "saddr", "10.99.0.0/24", "counter", "accept"],
    ["iptables", "-A", "INPUT", "-s", "10.99.1.0/24", "-j", "ACCEPT"],
    ["ip", "rule", "add", "priority", "100", "from", "10.99.2.0/24", "lookup", "main"],
    ["ip", "route", "add", "10.98.0.0/24", "via", "198.51.100.1"],
]


def admin_snapshot(lab) -> dict:
    cmds = {"rules4": ["ip", "-4", "rule"], "rules6": ["ip", "-6", "rule"],
            "main4": ["ip", "-4", "route", "show", "table", "main"],
            "main6": ["ip", "-6", "route", "show", "table", "main"],
            "nft": ["nft", "list", "ruleset"],
            "iptables": ["iptables", "-S"], "ip6tables": ["ip6tables", "-S"],
            "rt_tables.d": ["ls", "/etc/iproute2/rt_tables.d"]}
    return {k: lab.run("r1", v, check=False).stdout for k, v in cmds.items()}


def sources(lab, n: int = 30) -> collections.Counter:
    return collections.Counter(lab.flows("c1", n) + lab.flows("c2", n))


@pytest.fixture(scope="module")
def converged(lab):
    host_vars = yaml.safe_load((ROOT / "lab/inventories/three_isp/host_vars/r1.yml").read_text())
    for up in host_vars["multihome_uplinks"]:
        if up["name"] == "isp3":
            up["interface_may_be_absent"] = True
    extra = lab.dir / "absent-isp3.yml"
    extra.write_text(yaml.safe_dump({"multihome_uplinks": host_vars["multihome_uplinks"]}))
    unplug(lab)
    for argv in ADMIN_STATE:
        lab.run("r1", argv)
    lab.admin_before = admin_snapshot(lab)
    run = lab.playbook("-e", f"@{extra}")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert wait_for(lambda: statuses(lab)["isp1"] == "up" and statuses(lab)["isp2"] == "up", 15)
    return lab


def test_play_succeeds_with_an_absent_interface_and_status_shows_it_absent(converged) -> None:
    assert statuses(converged) == {"isp1": "up", "isp2": "up", "isp3": "absent"}
    absent_lines = [x for x in events(converged) if "uplink=isp3 interface=wan3 absent" in x]
    assert len(absent_lines) == 1, events(converged)[-20:]


def test_the_other_uplinks_balance_and_nat_while_one_is_absent(converged) -> None:
    seen = sources(converged)
    assert seen[ISP1] >= 20 and seen[ISP2] >= 20 and seen[ISP3] == 0, seen
    assert sum(seen.values()) == 60, seen


def test_apply_succeeds_while_an_interface_is_absent(converged) -> None:
    applied = converged.run("r1", ["multihome", "apply", "--json"], check=False)
    assert applied.returncode == 0, applied.stderr
    assert statuses(converged)["isp3"] == "absent"


def test_an_uplink_whose_interface_appears_joins_the_balancing(converged) -> None:
    lab = converged
    plug(lab)
    assert wait_for(lambda: statuses(lab)["isp3"] == "up", 15), events(lab)[-20:]
    routes = lab.run("r1", ["ip", "route", "show", "table", "mh_isp3"]).stdout
    assert "default via 198.51.100.9 dev wan3" in routes, routes
    assert wait_for(lambda: sources(lab, 15)[ISP3] > 0, 10), sources(lab, 15)
    assert any("uplink=isp3 repair" in x and "lsm=restarted" in x for x in events(lab))


def test_routes_vanished_from_one_table_are_put_back_and_no_other_uplink_is_touched(converged) -> None:
    lab = converged
    before = len(events(lab))
    others = {t: lab.run("r1", ["ip", "route", "show", "table", t]).stdout for t in ("mh_isp2", "mh_isp3")}
    lab.run("r1", ["ip", "route", "flush", "table", "mh_isp1"])
    assert wait_for(lambda: "default via 198.51.100.1 dev wan1" in
                    lab.run("r1", ["ip", "route", "show", "table", "mh_isp1"]).stdout, 5)
    # The repair's log line follows its last step.
    assert wait_for(lambda: any(" repair " in x for x in events(lab)[before:]), 5)
    new = events(lab)[before:]
    repairs = [x for x in new if " repair " in x]
    assert repairs and all("uplink=isp1 " in x for x in repairs), new
    assert all("lsm=restarted" not in x for x in repairs), repairs
    assert {t: lab.run("r1", ["ip", "route", "show", "table", t]).stdout for t in others} == others
    seen = sources(lab, 15)
    assert seen[ISP1] > 0, seen


def test_an_interface_deleted_again_makes_the_uplink_absent_and_the_rest_keeps_working(converged) -> None:
    lab = converged
    unplug(lab)
    assert wait_for(lambda: statuses(lab)["isp3"] == "absent", 5)
    seen = sources(lab, 15)
    assert seen[ISP3] == 0 and seen[ISP1] > 0 and seen[ISP2] > 0, seen


def test_boot_restore_succeeds_while_an_interface_is_absent(converged) -> None:
    lab = converged
    before = len(events(lab))
    booted = lab.run("r1", ["multihome", "boot"], check=False)
    assert booted.returncode == 0, booted.stderr
    # The restarted LSMs report their first verdicts after the hold time.
    assert wait_for(lambda: all(any(f"uplink={u} source=probe state=up" in x for x in events(lab)[before:])
                                for u in ("isp1", "isp2")), 15), events(lab)[before:]
    want = {"isp1": "up", "isp2": "up", "isp3": "absent"}
    assert wait_for(lambda: statuses(lab) == want, 10), statuses(lab)
    seen = sources(lab, 15)
    assert seen[ISP1] > 0 and seen[ISP2] > 0 and seen[ISP3] == 0, seen


def from_router(lab, proto: str) -> list:
    """Sources the internet server saw for 3 new flows opened by the router itself."""
    cmd = [sys.executable, str(ROOT / "lab" / "traffic.py"), "flows", "--dst", "203.0.113.10",
           "--port", "5001", "--n", "3", "--proto", proto, "--timeout", "1"]
    return json.loads(lab.run("r1", cmd).stdout)


def test_the_routers_own_traffic_follows_failover_and_main_is_left_alone(converged) -> None:
    lab = converged
    main_before = lab.run("r1", ["ip", "route", "show", "table", "main"]).stdout
    assert "default via 198.51.100.1 dev wan1" in main_before  # the lab admin's own default
    assert from_router(lab, "tcp") == [ISP1] * 3
    lab.cut_upstream("isp1")
    try:
        assert wait_for(lambda: statuses(lab)["isp1"] == "down", 10), events(lab)[-10:]
        assert from_router(lab, "udp") == [ISP2] * 3  # a DNS-style query/answer
        assert from_router(lab, "tcp") == [ISP2] * 3
    finally:
        lab.restore_upstream("isp1")
    assert wait_for(lambda: statuses(lab)["isp1"] == "up", 15)
    assert from_router(lab, "tcp") == [ISP1] * 3
    assert lab.run("r1", ["ip", "route", "show", "table", "main"]).stdout == main_before


def test_removing_the_uplink_that_carries_the_management_session_is_refused(converged) -> None:
    lab = converged
    model = json.loads(lab.run("r1", ["cat", "/etc/netops-multihome/model.json"]).stdout)
    model["routing"] = [r for r in model["routing"] if r["name"] != "mh_isp3"]
    argv = ["multihome", "apply", "--check", "--only", "routing", "--model", "-", "--management", ISP3]
    refused = lab.run("r1", argv, check=False, stdin=json.dumps(model))
    assert refused.returncode == 1, refused.stdout
    assert "without isp3" in refused.stderr and ISP3 in refused.stderr, refused.stderr
    assert "multihome_allow_management_uplink_removal" in refused.stderr
    allowed = lab.run("r1", [*argv, "--allow-management-removal", "--json"], stdin=json.dumps(model))
    assert json.loads(allowed.stdout)["changed"]
    assert "mh_isp3.conf" in lab.run("r1", ["ls", "/etc/iproute2/rt_tables.d"]).stdout  # --check


def test_an_uplink_removed_from_the_inventory_leaves_nothing_behind(converged) -> None:
    lab = converged
    extra = lab.dir / "without-isp3.yml"
    uplinks = yaml.safe_load((lab.dir / "absent-isp3.yml").read_text())["multihome_uplinks"]
    lans = yaml.safe_load((ROOT / "lab/inventories/three_isp/host_vars/r1.yml").read_text())["multihome_lans"]
    for lan in lans:  # isp3's delegated IPv6 prefix goes with it
        lan["prefixes"] = [p for p in lan["prefixes"] if not p.startswith("2001:db8:301:")]
    extra.write_text(yaml.safe_dump({"multihome_uplinks": [u for u in uplinks if u["name"] != "isp3"],
                                     "multihome_lans": lans}))
    table_id = json.loads(lab.run("r1", ["multihome", "status", "--json"]).stdout)["uplinks"][2]["table"]
    run = lab.playbook("-e", f"@{extra}")
    assert run.returncode == 0, run.stdout[-3000:]
    assert "mh_isp3.conf" not in lab.run("r1", ["ls", "/etc/iproute2/rt_tables.d"]).stdout
    for fam in ("-4", "-6"):
        rules = lab.run("r1", ["ip", fam, "rule"]).stdout
        assert f"lookup {table_id}" not in rules and "mh_isp3" not in rules and "wan3" not in rules, rules
    assert lab.run("r1", ["ip", "route", "show", "table", str(table_id)], check=False).stdout == ""
    assert "isp3" not in lab.run("r1", ["ls", "/var/lib/netops-multihome/state"]).stdout
    assert "wan3" not in lab.run("r1", ["nft", "list", "table", "inet", "netops_multihome"]).stdout
    assert "isp3" not in lab.run("r1", ["cat", "/etc/netops-multihome/lsm.conf"]).stdout
    assert statuses(lab) == {"isp1": "up", "isp2": "up"}


def test_state_absent_removes_everything_ours_and_leaves_the_admins_state_byte_identical(converged) -> None:
    lab = converged
    monitor = lab.run("r1", ["cat", "/run/netops-multihome/monitor.pid"]).stdout.split()
    children = lab.run("r1", ["ps", "-o", "pid=", "--ppid", monitor[0]]).stdout.split()
    pids = monitor + children
    assert len(pids) >= 3, pids  # the monitor, ip monitor and one LSM per present uplink
    run = lab.playbook("-e", "multihome_state=absent")
    assert run.returncode == 0, run.stdout[-3000:]
    assert admin_snapshot(lab) == lab.admin_before
    for path in ("/etc/netops-multihome", "/usr/local/lib/netops-multihome", "/usr/local/sbin/multihome",
                 "/etc/sysctl.d/90-netops-multihome.conf", "/var/lib/netops-multihome"):
        assert lab.run("r1", ["test", "-e", path], check=False).returncode == 1, path
    assert wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in pids), 5), pids


def test_a_misspelt_multihome_state_is_refused_naming_it(converged) -> None:
    run = converged.playbook("-e", "multihome_state=absnet")
    assert run.returncode != 0
    assert "multihome_state" in run.stdout and "absnet" in run.stdout and "present, absent" in run.stdout
