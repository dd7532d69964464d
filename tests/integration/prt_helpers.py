"""Helpers for the policy_route_table kernel tests: a router namespace of their own.

The router is a network namespace with veth uplinks and a LAN. The module runs inside it
through real Ansible, in a private mount namespace where a per-test copy of /etc/iproute2 is
bind-mounted over /etc/iproute2, so the host's own rt_tables files are never touched.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = ROOT / ".build" / "collections"
ANSIBLE = "/tmp/venvtest/bin/ansible"

# router interface -> (IPv4, IPv6) addresses, lab-like
ROUTER_LINKS = {
    "wan1": ("198.51.100.2/30", "2001:db8:f1:1::2/64"),
    "wan2": ("198.51.100.6/30", "2001:db8:f2:1::2/64"),
    "lan1": ("192.168.1.1/24", "fd00:0:1:1::1/64"),
}


def sh(argv: List[str], check: bool = True, stdin: Optional[str] = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, input=stdin, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed rc={proc.returncode}: {proc.stderr}{proc.stdout}")
    return proc


def ensure_collection_link() -> None:
    link = COLLECTIONS / "ansible_collections" / "netops" / "multihome"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(ROOT)


class Router:
    def __init__(self, tag: str, workdir: Path) -> None:
        self.ns = f"prt-{tag}-r"
        self.peer = f"prt-{tag}-p"
        self.etc = workdir / "iproute2"  # bind-mounted over /etc/iproute2 for the module

    # ------------------------------------------------------------ lifecycle
    def up(self) -> Router:
        self.down()
        sh(["ip", "netns", "add", self.ns])
        sh(["ip", "netns", "add", self.peer])
        # no DAD: link-local addresses settle at once instead of producing kernel route
        # events later, in the middle of a test watching 'ip monitor'
        for ns in (self.ns, self.peer):
            for scope in ("all", "default"):
                sh(["ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{scope}.accept_dad=0"])
        for name, (v4, v6) in ROUTER_LINKS.items():
            sh(["ip", "-n", self.ns, "link", "add", name, "type", "veth",
                "peer", "name", f"{name}p", "netns", self.peer])
            self.ip("link", "set", name, "up")
            sh(["ip", "-n", self.peer, "link", "set", f"{name}p", "up"])
            self.ip("addr", "add", v4, "dev", name)
            self.ip("-6", "addr", "add", v6, "dev", name, "nodad")
        self.ip("link", "set", "lo", "up")
        shutil.copytree("/etc/iproute2", self.etc, symlinks=True)
        deadline = time.monotonic() + 10
        while "tentative" in self.ip("-6", "addr", "show").stdout:
            if time.monotonic() > deadline:
                raise AssertionError("IPv6 addresses stay tentative")
            time.sleep(0.1)
        return self

    def down(self) -> None:
        for ns in (self.ns, self.peer):
            sh(["ip", "netns", "del", ns], check=False)

    # ------------------------------------------------------------ commands
    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh(["ip", "-n", self.ns, *args], check=check)

    def in_router(self, argv: List[str]) -> List[str]:
        """argv run inside the router with the router's own /etc/iproute2."""
        return ["ip", "netns", "exec", self.ns, "unshare", "--mount", "--propagation", "private",
                "sh", "-c", 'mount --bind "$1" /etc/iproute2 && shift && exec "$@"', "sh",
                str(self.etc), *argv]

    def module(self, args: Dict, check: bool = False, diff: bool = False) -> Tuple[dict, str]:
        """Run netops.multihome.policy_route_table through ansible; (result, full output)."""
        ensure_collection_link()
        argv = [ANSIBLE, "localhost", "-c", "local", "-i", "localhost,",
                "-e", "ansible_python_interpreter=/usr/bin/python3",
                "-m", "netops.multihome.policy_route_table", "-a", json.dumps(args)]
        if check:
            argv.append("--check")
        if diff:
            argv.append("--diff")
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_FORCE_COLOR="0", ANSIBLE_STDOUT_CALLBACK="minimal")
        proc = subprocess.run(self.in_router(argv), capture_output=True, text=True, env=env,
                              timeout=120)
        out = proc.stdout
        marker = next((i for i in (out.find("localhost | "),) if i >= 0), None)
        if marker is None:
            raise AssertionError(f"no module result in output:\n{out}\n{proc.stderr}")
        status, body = out[marker:].split(" => ", 1)
        result = json.loads(body)
        # ansible-core 2.19's minimal callback shows failure in the status word only
        result["failed"] = "FAILED" in status
        return result, out

    def snapshot(self) -> str:
        """Everything the module could change: all routes, all rules, the rt_tables tree."""
        parts = []
        for fam in ("-4", "-6"):
            parts.append(self.ip("-d", fam, "route", "show", "table", "all").stdout)
            parts.append(self.ip("-d", fam, "rule", "show").stdout)
        for path in sorted(self.etc.rglob("*")):
            parts.append(f"== {path.relative_to(self.etc)}\n")
            if path.is_file():
                parts.append(path.read_text())
        return "".join(parts)

    def routes(self, fam: str, table: str) -> List[str]:
        out = self.ip(fam, "route", "show", "table", table, check=False).stdout
        return [line.strip() for line in out.splitlines() if line.strip()]

    def rules(self, fam: str) -> List[str]:
        return [" ".join(line.split()) for line in self.ip(fam, "rule", "show").stdout.splitlines()]


class Monitor:
    """``ip monitor route rule`` in the router, fenced by marker routes so nothing is missed."""

    MARK = ("192.0.2.254/32", "999")

    def __init__(self, router: Router) -> None:
        self.router = router
        self.lines: List[str] = []
        self.proc = subprocess.Popen(["ip", "-n", router.ns, "monitor", "route", "rule"],
                                     stdout=subprocess.PIPE, text=True)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def _wait_for(self, needle: str, start: int) -> int:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for i in range(start, len(self.lines)):
                if needle in self.lines[i]:
                    return i
            time.sleep(0.02)
        raise AssertionError(f"ip monitor never showed {needle!r}: {self.lines}")

    def __enter__(self) -> Monitor:
        dst, table = self.MARK
        # repeat the opening marker until the monitor sees it: then it is surely listening
        deadline = time.monotonic() + 10
        while True:
            if time.monotonic() > deadline:
                raise AssertionError("ip monitor did not start")
            self.router.ip("route", "add", dst, "dev", "lo", "table", table)
            time.sleep(0.1)
            if any("192.0.2.254" in line for line in self.lines):
                break
            self.router.ip("route", "del", dst, "dev", "lo", "table", table)
        time.sleep(0.2)
        self.start = len(self.lines)
        return self

    def __exit__(self, *exc: object) -> None:
        dst, table = self.MARK
        self.router.ip("route", "del", dst, "dev", "lo", "table", table)
        end = self._wait_for("Deleted 192.0.2.254", self.start)
        self.events = [e for e in self.lines[self.start:end] if "192.0.2.254" not in e]
        self.proc.terminate()
        self.proc.wait(timeout=5)
