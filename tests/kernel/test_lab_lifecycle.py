"""The lab tool's lifecycle: idempotent up, down that leaves nothing, clear refusals."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from harness import MHLAB, Lab, lab_name

NAME = lab_name("mhlc")


def footprint() -> dict:
    links = json.loads(subprocess.run(["ip", "-j", "link", "show"], capture_output=True,
                                      text=True, check=True).stdout)
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    procs = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmdline = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if f"mhlab-{NAME}" in cmdline or f" {NAME}-" in cmdline:
                procs.append(cmdline)
    return {
        # Only this lab's names: other labs may come and go on a shared machine.
        "links": sorted(link["ifname"] for link in links if link["ifname"].startswith(f"{NAME}-")),
        "netns": sorted(n.split()[0] for n in netns.splitlines() if n.startswith(f"{NAME}-")),
        "procs": procs,
        "dir": Path(f"/tmp/mhlab-{NAME}").exists(),
        "mounts": Path("/proc/self/mountinfo").read_text().count(f"mhlab-{NAME}"),
    }


def test_up_down_ten_times_leaves_nothing() -> None:
    lab = Lab(NAME, "two_routers")
    lab.down()
    clean = footprint()
    assert clean["netns"] == [] and not clean["dir"]
    for _ in range(10):
        lab.up()
        assert len(footprint()["netns"]) == 9  # inet, 2 ISPs, 2 routers, 4 clients
        lab.down()
        assert footprint() == clean


def test_up_is_idempotent_and_routers_are_isolated() -> None:
    lab = Lab(NAME, "two_routers")
    try:
        first = lab.up().state
        pid = (lab.dir / "r1" / "sshd.pid").read_text()
        second = lab.up().state
        assert first == second
        assert (lab.dir / "r1" / "sshd.pid").read_text() == pid, "a healthy lab is left alone"
        lab.ssh("r1", "echo r1 > /etc/mhlab-owner")
        lab.ssh("r2", "echo r2 > /etc/mhlab-owner")
        assert lab.ssh("r1", "cat /etc/mhlab-owner").stdout.strip() == "r1"
        assert lab.ssh("r2", "cat /etc/mhlab-owner").stdout.strip() == "r2"
        assert not Path("/etc/mhlab-owner").exists()
        # A half-broken lab is rebuilt by `up`.
        subprocess.run(["ip", "netns", "del", f"{NAME}-c2"], check=True)
        lab.up()
        assert lab.flows("r2", 1) == ["198.51.100.18"]
        assert lab.ssh("r1", "test -e /etc/mhlab-owner", check=False).returncode == 1
    finally:
        lab.down()


def test_inventory_lists_every_router() -> None:
    lab = Lab(NAME, "three_isp")
    try:
        lab.up()
        inv = json.loads((lab.inventory / "hosts.yml").read_text())
        hosts = inv["all"]["children"]["routers"]["hosts"]
        assert sorted(hosts) == ["r1"]
        assert hosts["r1"]["ansible_host"] == lab.state["routers"]["r1"]["mgmt"]
        assert [u["router_if"] for u in lab.router()["uplinks"]] == ["wan1", "wan2", "wan3"]
        assert lab.flows("r1", 1, src="198.51.100.10", timeout=1) == ["error:timeout"]
        assert lab.spoofed("isp1") >= 1
    finally:
        lab.down()


def test_refuses_without_root() -> None:
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           sys.executable, str(MHLAB), "up", "--name", NAME],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "needs root" in proc.stderr


def test_refuses_when_a_tool_is_missing(tmp_path: Path) -> None:
    os.symlink(sys.executable, tmp_path / "python3")
    proc = subprocess.run([sys.executable, str(MHLAB), "up", "--name", NAME],
                          capture_output=True, text=True, env={"PATH": str(tmp_path)})
    assert proc.returncode == 2
    assert "missing tools: ip, nft" in proc.stderr


def test_unknown_topology_and_bad_name_are_refused() -> None:
    proc = subprocess.run([sys.executable, str(MHLAB), "up", "--name", NAME, "--topology", "nope"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown topology 'nope'; known: default" in proc.stderr
    proc = subprocess.run([sys.executable, str(MHLAB), "up", "--name", "Bad-Name"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "--name 'Bad-Name'" in proc.stderr
