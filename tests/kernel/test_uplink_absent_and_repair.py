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
