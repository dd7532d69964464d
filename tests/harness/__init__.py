"""Pytest harness over the namespace lab: one `Lab` object per topology instance.

Everything here acts on the real kernel through the lab tool (`lab/mhlab.py`) and the
traffic tool (`lab/traffic.py`); nothing is simulated.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Union

ROOT = Path(__file__).resolve().parents[2]
MHLAB = ROOT / "lab" / "mhlab.py"
TRAFFIC = ROOT / "lab" / "traffic.py"
PROBE = ROOT / "lab" / "probe.py"
SERVER4 = "203.0.113.10"
SERVER6 = "2001:db8:ffff::10"
PORT = 5001

sys.path.insert(0, str(ROOT / "lab"))
import mhlab  # noqa: E402


class Lab:
    """A running lab. Node names are the topology's: r1, c1, c2, isp1, isp2, inet, ..."""

    def __init__(self, name: str, topology: str = "default", release: Optional[str] = None) -> None:
        self.name = name
        self.topology = topology
        self.release = release  # Debian release of systemd-booted routers (topology's default)
        self.state: dict = {}

    # ------------------------------------------------------------ lifecycle
    def up(self) -> Lab:
        self.state = mhlab.up(self.name, self.topology, self.release)
        return self

    def reboot(self, router: str = "r1") -> float:
        """Power-cycle a systemd-booted router (fresh kernel state, same disk); seconds
        from power-on until its sshd answered."""
        return mhlab.reboot(self.name, router)

    def down(self) -> None:
        mhlab.down(self.name)

    @property
    def dir(self) -> Path:
        return mhlab.labdir(self.name)

    @property
    def inventory(self) -> Path:
        return self.dir / "inventory"

    @property
    def plan(self) -> dict:
        return self.state["plan"]

    def router(self, name: str = "r1") -> dict:
        return self.plan["routers"][name]

    def uplink(self, isp: str, router: str = "r1") -> dict:
        return next(u for u in self.router(router)["uplinks"] if u["isp"] == isp)

    def uplink_address(self, isp: str, router: str = "r1", family: int = 4) -> str:
        return self.uplink(isp, router)["address4" if family == 4 else "address6"].split("/")[0]

    def client_of(self, lan: str = "lan1", router: str = "r1") -> str:
        return next(x["client"] for x in self.router(router)["lans"] if x["name"] == lan)

    # ------------------------------------------------------------ commands
    def argv(self, node: str, cmd: Sequence[str]) -> List[str]:
        return mhlab.exec_argv(self.name, node, list(cmd))

    def run(self, node: str, cmd: Sequence[str], check: bool = True, timeout: float = 120,
            stdin: Optional[str] = None) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.argv(node, cmd), capture_output=True, text=True,
                              timeout=timeout, input=stdin)
        if check and proc.returncode != 0:
            raise AssertionError(f"{node}: {' '.join(cmd)} failed rc={proc.returncode}\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    def popen(self, node: str, cmd: Sequence[str]) -> subprocess.Popen:
        return subprocess.Popen(self.argv(node, cmd), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def playbook(self, *extra: str, playbook: Optional[Path] = None,
                 inventory: Optional[Path] = None) -> subprocess.CompletedProcess:
        """Run site.yml (or PLAYBOOK) against this lab's inventory (or INVENTORY) with this
        checkout's collection."""
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".build" / "collections"),
                   ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_NOCOLOR="1")
        argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory or self.inventory),
                str(playbook or ROOT / "playbooks" / "site.yml"), *extra]
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900)

    def snapshot(self, router: str = "r1") -> Dict[str, str]:
        """Everything a converge could change on ROUTER: rulesets, policy rules, routes,
        forwarding and reverse-path settings, the files the role writes."""
        cmds = {
            "nft": ["nft", "list", "ruleset"],
            "iptables": ["sh", "-c", "{ iptables-save; ip6tables-save; } | grep -v '^#'"],
            "rules4": ["ip", "rule"],
            "rules6": ["ip", "-6", "rule"],
            "routes4": ["ip", "route", "show", "table", "all"],
            "routes6": ["ip", "-6", "route", "show", "table", "all"],
            "sysctl": ["sh", "-c", "sysctl -a 2>/dev/null | grep -E 'forwarding|rp_filter|src_valid_mark'"],
            "files": ["sh", "-c", "find /etc/netops-multihome /etc/sysctl.d /etc/iproute2 /etc/systemd/system"
                      " /usr/local/lib/netops-multihome /usr/local/sbin -type f 2>/dev/null"
                      " | sort | xargs -r sha256sum"],
        }
        return {key: self.run(router, argv, check=False).stdout for key, argv in cmds.items()}

    def ssh(self, router: str, command: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a shell command on a router the way an administrator does: over SSH."""
        info = self.state["routers"][router]
        argv = ["ssh", "-i", str(self.dir / "id_ed25519"), "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                "-o", "BatchMode=yes", f"root@{info['mgmt']}", command]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            raise AssertionError(f"ssh {router} {command!r}: rc={proc.returncode}\n{proc.stderr}")
        return proc

    # ------------------------------------------------------------ traffic
    def flows(self, client: str, n: int, proto: str = "tcp", family: int = 4,
              dst: Optional[str] = None, src: Union[str, Sequence[str], None] = None,
              timeout: float = 2.0, port: int = PORT, parallel: int = 1) -> List[str]:
        """Open N new flows from CLIENT; per flow, the source address the server saw
        (or "error:<reason>"). Several SRC addresses are used in turn; PARALLEL flows
        are open at once (SYN-loss tests need that to finish in seconds)."""
        dst = dst or (SERVER4 if family == 4 else SERVER6)
        cmd = [sys.executable, str(TRAFFIC), "flows", "--dst", dst, "--port", str(port),
               "--n", str(n), "--proto", proto, "--timeout", str(timeout),
               "--parallel", str(parallel)]
        for address in [src] if isinstance(src, str) else (src or []):
            cmd += ["--src", address]
        out = self.run(client, cmd, timeout=60 + n * timeout / max(1, parallel)).stdout
        return json.loads(out)

    @contextmanager
    def serve(self, node: str, port: int) -> Iterator[None]:
        """Run the traffic server in NODE on PORT while the body runs (LAN hosts and routers
        have none of their own)."""
        cmd = [sys.executable, str(TRAFFIC), "serve", "--port", str(port),
               "--log", str(self.dir / f"flows-{node}-{port}.log")]
        proc = subprocess.Popen(self.argv(node, cmd), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline = time.monotonic() + 10
            while f":{port} " not in self.run(node, ["ss", "-Hltn"]).stdout:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"traffic server in {node} did not start on port {port}")
                time.sleep(0.05)
            yield
        finally:
            proc.kill()
            proc.wait(timeout=10)

    @contextmanager
    def stream(self, client: str, count: int = 4, duration: float = 10.0, proto: str = "tcp",
               family: int = 4, interval: float = 0.05, src: Optional[str] = None,
               dst: Optional[str] = None) -> Iterator[StreamHandle]:
        """Hold COUNT long-lived flows for DURATION seconds (or until `handle.end_early()`)
        while the body runs. After the block, `handle.reports` holds per flow: sources seen,
        max_gap (s), error."""
        dst = dst or (SERVER4 if family == 4 else SERVER6)
        cmd = [sys.executable, "-u", str(TRAFFIC), "stream", "--dst", dst, "--port", str(PORT),
               "--count", str(count), "--duration", str(duration), "--proto", proto,
               "--interval", str(interval)]
        if src:
            cmd += ["--src", src]
        handle = StreamHandle(self.popen(client, cmd))
        handle.wait_ready()
        try:
            yield handle
        finally:
            handle.finish(timeout=duration + 30)

    @contextmanager
    def probing(self, client: str, duration: float, interval: float = 0.05,
                timeout: float = 0.5, family: int = 4) -> Iterator[ProbeHandle]:
        """Open a new TCP flow every INTERVAL for DURATION while the body runs (a fault,
        a failover...). After the block, `handle.flows` is [[time, result], ...] with time
        on this process's monotonic clock, comparable with `time.monotonic()`."""
        dst = SERVER4 if family == 4 else SERVER6
        cmd = [sys.executable, str(PROBE), "--dst", dst, "--port", str(PORT), "--interval",
               str(interval), "--duration", str(duration), "--timeout", str(timeout)]
        handle = ProbeHandle(self.popen(client, cmd))
        try:
            yield handle
        finally:
            handle.finish(timeout=duration + timeout + 30)

    def server_log(self) -> List[List[str]]:
        """The server's own record: one [proto, source, port] per flow it accepted."""
        path = self.dir / "flows.log"
        return [line.split() for line in path.read_text().splitlines()] if path.exists() else []

    # ------------------------------------------------------------ faults
    def isp_drop(self, isp: str, percent: int, syn_only: bool = True) -> None:
        """Make ISP drop PERCENT% of customers' SYNs (or of all packets, both directions)."""
        match = "tcp flags & (syn | ack) == syn " if syn_only else ""
        if not 0 < percent <= 100:
            raise ValueError(f"percent must be 1..100, got {percent}")
        share = "" if percent == 100 else f"numgen random mod 100 < {percent} "
        rule = f"{match}{share}counter drop"
        self.run(isp, ["nft", "flush", "chain", "inet", "lab", "faults"])
        if syn_only:
            self.run(isp, ["nft", f"add rule inet lab faults iifname != \"upstream\" {rule}"])
        else:
            self.run(isp, ["nft", f"add rule inet lab faults {rule}"])

    def isp_clear_faults(self, isp: str) -> None:
        self.run(isp, ["nft", "flush", "chain", "inet", "lab", "faults"])

    def isp_dropped(self, isp: str) -> int:
        """Packets the fault set by `isp_drop` has dropped so far at ISP."""
        return self._chain_packets(isp, "faults")

    def isp_probe(self, isp: str, match: str) -> None:
        """Count, at ISP, the forwarded packets matching an nft expression (see `isp_probed`)."""
        self.run(isp, ["nft", f"add rule inet lab probes {match} counter"])

    def isp_probed(self, isp: str) -> int:
        return self._chain_packets(isp, "probes")

    def isp_clear_probes(self, isp: str) -> None:
        self.run(isp, ["nft", "flush", "chain", "inet", "lab", "probes"])

    def _chain_packets(self, isp: str, chain: str) -> int:
        out = self.run(isp, ["nft", "-j", "list", "chain", "inet", "lab", chain]).stdout
        return sum(int(expr["counter"]["packets"])
                   for item in json.loads(out)["nftables"] if "rule" in item
                   for expr in item["rule"]["expr"] if "counter" in expr)

    def spoofed(self, isp: str) -> int:
        """Packets ISP dropped because a customer sent them from an address not its own."""
        out = self.run(isp, ["nft", "-j", "list", "counter", "inet", "lab", "spoofed"]).stdout
        for item in json.loads(out)["nftables"]:
            if "counter" in item:
                return int(item["counter"]["packets"])
        raise AssertionError("no spoofed counter in " + out)

    def reset_spoofed(self, isp: str) -> None:
        self.run(isp, ["nft", "reset", "counter", "inet", "lab", "spoofed"])

    def cut_upstream(self, isp: str) -> None:
        """The ISP dies beyond the customer link: the router's link stays up."""
        mhlab.set_upstream(self.name, isp, False)

    def restore_upstream(self, isp: str) -> None:
        mhlab.set_upstream(self.name, isp, True)

    def carrier_down(self, isp: str, router: str = "r1") -> None:
        """The ISP's port facing the router goes down: the router sees carrier loss."""
        mhlab.set_carrier(self.name, isp, router, False)

    def carrier_up(self, isp: str, router: str = "r1") -> None:
        mhlab.set_carrier(self.name, isp, router, True)
        self._wait_route(router, self.uplink(isp, router)["router_if"])

    def _wait_route(self, node: str, dev: str) -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            out = self.run(node, ["ip", "-j", "link", "show", "dev", dev]).stdout
            if "LOWER_UP" in out:
                return
            time.sleep(0.02)
        raise AssertionError(f"{node}: {dev} did not come back up")


class StreamHandle:
    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.reports: List[Dict] = []
        self.local_ports: List[int] = []

    def wait_ready(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError("stream client failed to start: " + err)
        self.local_ports = json.loads(line)["ready"]

    def end_early(self) -> None:
        """End the streams now instead of at their duration (the report covers until now)."""
        self.proc.send_signal(signal.SIGUSR1)

    def finish(self, timeout: float) -> None:
        out, err = self.proc.communicate(timeout=timeout)
        if self.proc.returncode != 0:
            raise AssertionError(f"stream client failed: {err}")
        self.reports = json.loads(out)["streams"]


class ProbeHandle:
    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.flows: List[list] = []

    def finish(self, timeout: float) -> None:
        out, err = self.proc.communicate(timeout=timeout)
        if self.proc.returncode != 0:
            raise AssertionError(f"probe failed: {err}")
        data = json.loads(out)
        self.flows = [[data["t0"] + offset, result] for offset, result in data["flows"]]


def recovery_time(flows: List[list], event: float) -> Optional[float]:
    """Seconds from EVENT until new flows reliably work: the start of the first flow after
    which every later flow succeeded. None if flows never recovered."""
    after = [(t, r) for t, r in flows if t >= event]
    last_failure = max((i for i, (_, r) in enumerate(after) if r.startswith("error")), default=-1)
    if last_failure == len(after) - 1:
        return None
    return max(0.0, after[last_failure + 1][0] - event)


def first_via(flows: List[list], source: str, since: float) -> Optional[float]:
    """Seconds from SINCE until the first new flow that left with SOURCE."""
    times = [t for t, r in flows if t >= since and r == source]
    return min(times) - since if times else None


def wait_for(predicate, timeout: float, step: float = 0.05) -> Optional[float]:
    """Seconds until PREDICATE() was true, or None if it never was within TIMEOUT."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(step)
    return None


def lab_name(default: str, suffix: str = "") -> str:
    """A lab name (at most 8 characters) no other run or worker on this machine uses:
    MHLAB_NAME (else DEFAULT), cut to fit, then the pytest-xdist worker's number (modules
    run in parallel, each with its own labs), then SUFFIX (one lab per release, say)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "").removeprefix("gw")
    base = os.environ.get("MHLAB_NAME", default)
    return base[:8 - len(worker) - len(suffix)] + worker + suffix
