"""Dynamic uplinks on the lab's three_isp router r1 (issue 12), shared by the kernel tests
and bench/uplink_rejoin.py: isp2 leases its address from dnsmasq in the ISP's namespace
with udhcpc on the router (``addressing: dhcp``), isp3 is a point-to-point /32 with a peer
gateway (``addressing: dynamic``, a PPPoE stand-in) whose interface can be re-created.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Optional

import yaml

from . import Lab, mhlab, wait_for

ROOT = Path(__file__).resolve().parents[2]
ISP1 = "198.51.100.2"
DHCP_FIRST, DHCP_GW_FIRST = "198.51.100.6", "198.51.100.5"
DHCP_NEXT, DHCP_GW_NEXT, DHCP_NET_NEXT = "100.64.20.50", "100.64.20.1", "100.64.20.0/24"
P2P = [("100.64.30.2", "100.64.30.1"), ("100.64.31.7", "100.64.31.1")]


def statuses(lab: Lab) -> dict:
    out = lab.run("r1", ["multihome", "status", "--json"]).stdout
    return {u["name"]: u["state"] for u in json.loads(out)["uplinks"]}


class Dhcp:
    """dnsmasq serving isp2's customer port, and udhcpc on r1's wan2."""

    def __init__(self, lab) -> None:
        self.lab = lab
        self.server: Optional[subprocess.Popen] = None
        self.leases = lab.dir / "isp2-dhcp.log"
        self.client = lab.popen("r1", ["env", f"LEASE_LOG={self.leases}", "udhcpc", "-f", "-i", "wan2",
                                       "-s", str(ROOT / "lab" / "dhcp-client.script"), "-t", "20", "-T", "1",
                                       "-A", "1"])

    def serve(self, address: str, gateway: str, prefix: int) -> None:
        if self.server is not None:
            self.server.terminate()
            self.server.wait()
        # dnsmasq serves a range only on a port with an address in it: the ISP's new subnet.
        self.lab.run("isp2", ["ip", "address", "replace", f"{gateway}/{prefix}", "dev", "r1"])
        lease_db = self.lab.dir / "isp2.leases"
        lease_db.unlink(missing_ok=True)
        self.server = self.lab.popen("isp2", [
            "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            "--port=0", "--interface=r1", "--bind-interfaces", "--dhcp-authoritative", "--user=root",
            f"--dhcp-leasefile={lease_db}", f"--pid-file={self.lab.dir / 'isp2-dnsmasq.pid'}",
            f"--dhcp-range={address},{address},2m", f"--dhcp-option=option:router,{gateway}"])

    def lease_times(self, address: str) -> list:
        if not self.leases.exists():
            return []
        return [float(x.split()[0]) for x in self.leases.read_text().splitlines() if f" {address} " in x]

    def renumber(self) -> None:
        """Release the lease and ask again: the client takes what the server offers now."""
        os.kill(self.client.pid, signal.SIGUSR2)
        time.sleep(0.2)
        os.kill(self.client.pid, signal.SIGUSR1)

    def stop(self) -> None:
        for proc in (self.client, self.server):
            if proc is not None:
                proc.terminate()
                proc.wait()


def p2p_link(lab, local: str, peer: str) -> None:
    """(Re-)create r1's wan3 as a point-to-point /32 to isp3, routed back from inet."""
    r1, isp3 = mhlab.ns(lab.name, "r1"), mhlab.ns(lab.name, "isp3")
    subprocess.run(["ip", "-n", r1, "link", "del", "wan3"], check=False, capture_output=True)
    subprocess.run(["ip", "-n", r1, "link", "add", "wan3", "type", "veth", "peer", "name", "r1",
                    "netns", isp3], check=True)
    lab.run("isp3", ["ip", "address", "add", peer, "peer", f"{local}/32", "dev", "r1"])
    lab.run("isp3", ["ip", "link", "set", "r1", "up"])
    lab.run("r1", ["ip", "address", "add", local, "peer", f"{peer}/32", "dev", "wan3"])
    lab.run("r1", ["ip", "link", "set", "wan3", "up"])
    isp = lab.plan["isps"]["isp3"]
    lab.run("inet", ["ip", "route", "replace", f"{local}/32", "via", isp["upstream4"].split("/")[0]])


def isp_accepts(lab, isp: str, addresses: list) -> None:
    """The ISP's anti-spoofing filter accepts the addresses it hands this customer."""
    lab.run(isp, ["nft", "flush", "chain", "inet", "lab", "antispoof"])
    lab.run(isp, ["nft", "add", "rule", "inet", "lab", "antispoof", "iifname", "r1", "ip", "saddr", "!=",
                  "{ " + ", ".join(addresses) + " }", "counter", "name", "spoofed", "drop"])


def converge_dynamic(lab: Lab) -> Dhcp:
    """Make isp2 a DHCP uplink and isp3 a point-to-point one, converge site.yml with them."""
    host_vars = yaml.safe_load((ROOT / "lab/inventories/three_isp/host_vars/r1.yml").read_text())
    for up in host_vars["multihome_uplinks"]:
        if up["name"] in ("isp2", "isp3"):
            for key in ("address", "gateway", "address6", "gateway6"):
                up.pop(key)
            up["addressing"] = "dhcp" if up["name"] == "isp2" else "dynamic"
    extra = lab.dir / "dynamic.yml"
    extra.write_text(yaml.safe_dump({"multihome_uplinks": host_vars["multihome_uplinks"]}))
    isp2 = lab.plan["isps"]["isp2"]
    lab.run("inet", ["ip", "route", "replace", DHCP_NET_NEXT, "via", isp2["upstream4"].split("/")[0]])
    lab.run("r1", ["ip", "-4", "address", "flush", "dev", "wan2"])
    isp_accepts(lab, "isp2", [DHCP_FIRST, DHCP_NEXT])
    isp_accepts(lab, "isp3", [a for a, _gw in P2P])
    dhcp = Dhcp(lab)
    dhcp.serve(DHCP_FIRST, DHCP_GW_FIRST, 30)
    p2p_link(lab, *P2P[0])
    try:
        if not wait_for(lambda: dhcp.lease_times(DHCP_FIRST), 20):
            raise AssertionError("no DHCP lease")
        run = lab.playbook("-e", f"@{extra}")
        if run.returncode != 0:
            raise AssertionError(run.stdout[-4000:] + run.stderr[-2000:])
        if not wait_for(lambda: set(statuses(lab).values()) == {"up"}, 20):
            raise AssertionError(f"not all uplinks up: {statuses(lab)}")
    except BaseException:
        dhcp.stop()
        raise
    return dhcp


