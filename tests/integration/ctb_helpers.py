"""A small namespace topology for the conntrack_balance kernel tests (prefix ``ctb-``).

    c1 (lan1) ─┐                 ┌─ isp1 ─┐
               ├── r (router) ───┼─ isp2 ─┼── inet (server 203.0.113.10/.20, 2001:db8:ffff::10)
    c2 (lan2) ─┘       │         └─ isp3 ─┘
                       └──── site link (bypass target 203.0.113.130) ──── inet

ISPs drop customer packets whose source is not the customer's own address or its
delegated prefix, counting them in the named counter ``spoofed``. Traffic is real TCP
through the kernel; the server answers every connection with the source address it saw.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = ROOT / ".build" / "collections"
_link = COLLECTIONS / "ansible_collections" / "netops" / "multihome"
if not _link.exists():
    _link.parent.mkdir(parents=True, exist_ok=True)
    _link.symlink_to(ROOT)
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))

from ansible_collections.netops.multihome.plugins.module_utils.engine import balance  # noqa: E402
from ansible_collections.netops.multihome.plugins.module_utils.engine.runner import (  # noqa: E402
    CmdResult,
    Runner,
)

P = "ctb-"
NODES = ["r", "c1", "c2", "isp1", "isp2", "isp3", "inet"]
SERVER4 = "203.0.113.10"
PINNED4 = "203.0.113.20"
SITE4 = "203.0.113.130"
SERVER6 = "2001:db8:ffff::10"
PORT = 5001
LONG_PORT = 5002
ROUTER_PORT = 5003
WAN4 = {1: "198.51.100.2", 2: "198.51.100.6", 3: "198.51.100.10"}
ISP_OF = {v: f"isp{k}" for k, v in WAN4.items()}
C1 = "192.168.1.10"
C2 = "192.168.2.10"
C1_ULA = "fd00:0:1:1::10"
C1_GUA = {1: "2001:db8:101:1::10", 2: "2001:db8:201:1::10"}
NPT_OUT = {1: "2001:db8:101:ff::/64", 2: "2001:db8:201:ff::/64"}
TOOL = Path(__file__).resolve().parent / "ctb_traffic.py"


def ns(node: str) -> str:
    return P + node


def sh(node: str, *argv: str, check: bool = True, stdin: Optional[str] = None, timeout: float = 120) -> str:
    res = subprocess.run(
        ["ip", "netns", "exec", ns(node), *argv], input=stdin, capture_output=True, text=True, timeout=timeout
    )
    if check and res.returncode != 0:
        raise RuntimeError(f"{node}: {' '.join(argv)}: {res.stderr.strip()}")
    return res.stdout


class NetnsRunner(Runner):
    """The engine's runner, but every command runs inside the router namespace."""

    def __init__(self, node: str = "r") -> None:
        self.node = node

    def run(self, argv: Sequence[str], stdin: Optional[str] = None, check: bool = True) -> CmdResult:
        return super().run(["ip", "netns", "exec", ns(self.node), *argv], stdin=stdin, check=check)


def apply(params: dict, states: Optional[Dict[str, str]] = None, check: bool = False) -> dict:
    return balance.apply_policy(params, NetnsRunner(), check=check, states=states)


def base_params(backend: str, mode: str = "round_robin", **extra) -> dict:
    params = {
        "backend": backend,
        "mode": mode,
        "mark_mask": "0xff00",
        "uplinks": [
            {
                "name": "isp1",
                "interface": "wan1",
                "mark": "0x100",
                "weight": 2,
                "nat": "snat",
                "snat_address": WAN4[1],
                "source_prefixes": ["2001:db8:101:1::/64"],
                "nptv6": [{"inside": "fd00:0:1:1::/64", "outside": NPT_OUT[1]}],
            },
            {
                "name": "isp2",
                "interface": "wan2",
                "mark": "0x200",
                "weight": 1,
                "source_prefixes": ["2001:db8:201:1::/64"],
                "nptv6": [{"inside": "fd00:0:1:1::/64", "outside": NPT_OUT[2]}],
            },
            {"name": "isp3", "interface": "wan3", "mark": "0x300", "weight": 1},
        ],
        "lans": [
            {
                "name": "lan1",
                "interfaces": ["lan1"],
                "prefixes": [
                    "192.168.1.0/24",
                    "fd00:0:1:1::/64",
                    "2001:db8:101:1::/64",
                    "2001:db8:201:1::/64",
                ],
            },
            {"name": "lan2", "interfaces": ["lan2"], "prefixes": ["192.168.2.0/24", "fd00:0:1:2::/64"]},
        ],
        "pins": [{"uplink": "isp3", "destinations": [PINNED4 + "/32"]}],
        "bypass": ["203.0.113.128/25"],
    }
    params.update(extra)
    return params


# ---------------------------------------------------------------------------- topology


def _veth(a: str, a_if: str, b: str, b_if: str) -> None:
    subprocess.run(
        ["ip", "link", "add", a_if, "netns", ns(a), "type", "veth", "peer", "name", b_if, "netns", ns(b)],
        check=True,
    )
    sh(a, "ip", "link", "set", a_if, "up")
    sh(b, "ip", "link", "set", b_if, "up")


def _addr(node: str, dev: str, *addrs: str) -> None:
    for a in addrs:
        extra = ["nodad"] if ":" in a else []
        sh(node, "ip", "addr", "add", a, "dev", dev, *extra)


def _sysctl(node: str, *pairs: str) -> None:
    sh(node, "sysctl", "-qw", *pairs)


ISP_RULES = """
table inet isp {{
	counter spoofed {{ }}
	counter synloss {{ }}
	counter longflow {{ }}
	chain forward {{
		type filter hook forward priority 0; policy accept;
		iifname "cust" tcp dport {long} counter name longflow
		iifname "cust" ip saddr != {wan} counter name spoofed drop
		iifname "cust" ip6 saddr != {{ 2001:db8:f{k}:1::/64, 2001:db8:{k}01::/48 }} counter name spoofed drop
	}}
	chain synloss {{
		type filter hook forward priority 10; policy accept;
	}}
}}
"""


def down() -> None:
    for node in NODES:
        subprocess.run(["ip", "netns", "pids", ns(node)], capture_output=True)
        res = subprocess.run(["ip", "netns", "pids", ns(node)], capture_output=True, text=True)
        for pid in res.stdout.split():
            subprocess.run(["kill", pid], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns(node)], capture_output=True)


def up() -> None:
    down()
    for node in NODES:
        subprocess.run(["ip", "netns", "add", ns(node)], check=True)
        sh(node, "ip", "link", "set", "lo", "up")
        _sysctl(node, "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
    # LANs
    for k, client in ((1, "c1"), (2, "c2")):
        _veth("r", f"lan{k}", client, "eth0")
        _addr("r", f"lan{k}", f"192.168.{k}.1/24", f"fd00:0:1:{k}::1/64")
        _addr(client, "eth0", f"192.168.{k}.10/24", f"fd00:0:1:{k}::10/64")
        # extra client addresses for source_hash
        _addr(client, "eth0", *[f"192.168.{k}.{20 + i}/24" for i in range(8)])
        sh(client, "ip", "route", "add", "default", "via", f"192.168.{k}.1")
        sh(client, "ip", "-6", "route", "add", "default", "via", f"fd00:0:1:{k}::1")
    _addr("r", "lan1", "2001:db8:101:1::1/64", "2001:db8:201:1::1/64")
    _addr("c1", "eth0", C1_GUA[1] + "/64", C1_GUA[2] + "/64")
    # ISPs
    for k in (1, 2, 3):
        isp = f"isp{k}"
        _veth("r", f"wan{k}", isp, "cust")
        base = 4 * (k - 1)
        _addr("r", f"wan{k}", f"198.51.100.{base + 2}/30", f"2001:db8:f{k}:1::2/64")
        _addr(isp, "cust", f"198.51.100.{base + 1}/30", f"2001:db8:f{k}:1::1/64")
        _veth(isp, "upl", "inet", f"i{k}")
        _addr(isp, "upl", f"10.255.{k}.1/30", f"fd99:{k}::1/64")
        _addr("inet", f"i{k}", f"10.255.{k}.2/30", f"fd99:{k}::2/64")
        _sysctl(isp, "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
        sh(isp, "ip", "route", "add", "default", "via", f"10.255.{k}.2")
        sh(isp, "ip", "-6", "route", "add", "default", "via", f"fd99:{k}::2")
        sh(isp, "ip", "-6", "route", "add", f"2001:db8:{k}01::/48", "via", f"2001:db8:f{k}:1::2")
        sh(isp, "nft", "-f", "-", stdin=ISP_RULES.format(k=k, wan=WAN4[k], long=LONG_PORT))
        sh("inet", "ip", "route", "add", f"198.51.100.{base}/30", "via", f"10.255.{k}.1")
        sh("inet", "ip", "-6", "route", "add", f"2001:db8:f{k}:1::/64", "via", f"fd99:{k}::1")
        sh("inet", "ip", "-6", "route", "add", f"2001:db8:{k}01::/48", "via", f"fd99:{k}::1")
        # policy routing on the router (what policy_route_table sets up in production)
        table = str(100 + k)
        sh("r", "ip", "route", "add", "default", "via", f"198.51.100.{base + 1}", "table", table)
        sh("r", "ip", "-6", "route", "add", "default", "via", f"2001:db8:f{k}:1::1", "table", table)
        for fam in ("-4", "-6"):
            sh(
                "r",
                "ip",
                fam,
                "rule",
                "add",
                "fwmark",
                f"0x{k}00/0xff00",
                "table",
                table,
                "priority",
                str(1000 + k),
            )
    # connected and LAN routes win over the per-uplink defaults (policy_route_table does this
    # in production with the same suppress_prefixlength rule)
    for fam in ("-4", "-6"):
        sh("r", "ip", fam, "rule", "add", "priority", "999", "lookup", "main", "suppress_prefixlength", "0")
    # site link for bypassed destinations
    _veth("r", "site0", "inet", "site0")
    _addr("r", "site0", "10.254.0.1/30")
    _addr("inet", "site0", "10.254.0.2/30")
    sh("r", "ip", "route", "add", "203.0.113.128/25", "via", "10.254.0.2")
    sh("inet", "ip", "route", "add", "192.168.0.0/16", "via", "10.254.0.1")
    _addr("inet", "lo", SERVER4 + "/32", PINNED4 + "/32", SITE4 + "/32", SERVER6 + "/128")
    sh("r", "ip", "route", "add", "default", "via", "198.51.100.1")
    sh("r", "ip", "-6", "route", "add", "default", "via", "2001:db8:f1:1::1")
    _sysctl(
        "r",
        "net.ipv4.ip_forward=1",
        "net.ipv6.conf.all.forwarding=1",
        "net.ipv4.conf.all.rp_filter=2",
        "net.ipv4.conf.all.src_valid_mark=1",
    )
    _sysctl("c1", "net.ipv4.ip_local_port_range=10000 60999")
    _sysctl("c2", "net.ipv4.ip_local_port_range=10000 60999")
    start_server("inet", [PORT, LONG_PORT])
    start_server("c2", [PORT])
    start_server("c1", [PORT])
    start_server("r", [ROUTER_PORT])


def start_server(node: str, ports: List[int]) -> None:
    subprocess.Popen(
        ["ip", "netns", "exec", ns(node), sys.executable, str(TOOL), "serve", *map(str, ports)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    for _ in range(100):
        if all(f":{p} " in sh(node, "ss", "-Htln") for p in ports):
            return
        time.sleep(0.05)
    raise RuntimeError(f"server in {node} did not start")


# ---------------------------------------------------------------------------- traffic


def flows(
    client: str,
    dst: str,
    n: int,
    sources: Sequence[str] = (),
    port: int = PORT,
    parallel: int = 1,
    timeout: float = 3.0,
) -> List[Optional[str]]:
    """Open n short TCP connections; the address the server saw for each (None: failed)."""
    req = {
        "dst": dst,
        "port": port,
        "n": n,
        "sources": list(sources),
        "parallel": parallel,
        "timeout": timeout,
    }
    out = sh(client, sys.executable, str(TOOL), "flows", stdin=json.dumps(req), timeout=600)
    return json.loads(out)


def long_flow(client: str, dst: str, messages: int, interval: float) -> subprocess.Popen:
    req = {"dst": dst, "port": LONG_PORT, "messages": messages, "interval": interval}
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns(client), sys.executable, str(TOOL), "long"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(req))
    proc.stdin.close()
    return proc


def counter(isp: str, name: str) -> int:
    data = json.loads(sh(isp, "nft", "-j", "list", "counter", "inet", "isp", name))
    for item in data["nftables"]:
        if "counter" in item:
            return int(item["counter"]["packets"])
    raise RuntimeError("no counter")


def spoofed_total() -> int:
    return sum(counter(f"isp{k}", "spoofed") for k in (1, 2, 3))


def syn_loss(percent_half: bool) -> None:
    """Make every ISP drop half of the customer's SYNs (or stop doing so)."""
    for k in (1, 2, 3):
        sh(f"isp{k}", "nft", "flush", "chain", "inet", "isp", "synloss")
        if percent_half:
            sh(
                f"isp{k}",
                "nft",
                "add",
                "rule",
                "inet",
                "isp",
                "synloss",
                "iifname",
                "cust",
                "tcp",
                "flags",
                "&",
                "(syn|ack)",
                "==",
                "syn",
                "numgen",
                "random",
                "mod",
                "2",
                "==",
                "0",
                "counter",
                "name",
                "synloss",
                "drop",
            )


def flush_conntrack() -> None:
    sh("r", "conntrack", "-F", check=False)


def foreign_snapshot() -> str:
    """Everything the administrator owns on the router, as text."""
    parts = [sh("r", "nft", "list", "table", "inet", "admin")]
    for tool in ("iptables-save", "ip6tables-save"):
        for table in ("filter", "mangle", "nat"):
            text = sh("r", tool, "-t", table)
            parts.append(
                "\n".join(ln for ln in text.splitlines() if not ln.startswith("#") and "MH_" not in ln)
            )
    return "\n".join(parts)


ADMIN_NFT = """table inet admin {
	chain input {
		type filter hook input priority filter; policy accept;
		tcp dport 9999 counter packets 0 bytes 0 drop
		ip saddr 192.0.2.0/24 meta mark set meta mark & 0xffffff00 | 0x00000007
	}
}
"""


def install_foreign() -> None:
    sh("r", "nft", "-f", "-", stdin=ADMIN_NFT)
    sh("r", "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "9998", "-j", "DROP")
    sh(
        "r",
        "iptables",
        "-t",
        "mangle",
        "-A",
        "PREROUTING",
        "-i",
        "lan2",
        "-p",
        "udp",
        "--dport",
        "9997",
        "-j",
        "MARK",
        "--set-xmark",
        "0x1/0xff",
    )
    sh("r", "iptables", "-t", "mangle", "-N", "ADMIN_MARKS")
    sh(
        "r",
        "iptables",
        "-t",
        "mangle",
        "-A",
        "ADMIN_MARKS",
        "-j",
        "CONNMARK",
        "--save-mark",
        "--nfmask",
        "0xff",
        "--ctmask",
        "0xff",
    )
    sh("r", "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "site0", "-p", "udp", "-j", "MASQUERADE")
    sh("r", "ip6tables", "-A", "FORWARD", "-p", "tcp", "--dport", "9996", "-j", "REJECT")


def is_root() -> bool:
    return os.geteuid() == 0
