"""Health faults for the quorum and degraded tests: one target made unreachable through one
ISP (its echo requests dropped there), echo replies delayed for chosen senders (a userspace
responder: `tc netem` does not work here), and the role variables that give an uplink
several targets and thresholds."""
from __future__ import annotations

import json
import signal
import sys
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional

import yaml

from . import ROOT, Lab, wait_for

ECHO_DELAY = ROOT / "lab" / "echo_delay.py"
EVENTS = "/var/log/netops-multihome/events.log"


def block_target(lab: Lab, isp: str, target: str) -> None:
    """ISP drops echo requests to TARGET: only that target, only through that ISP, looks
    dead (cleared with the other faults by ``isp_clear_faults``)."""
    lab.run(isp, ["nft", f"add rule inet lab faults ip daddr {target} icmp type echo-request counter drop"])


def uplinks_with(lab: Lab, changes: Dict[str, dict]) -> List[dict]:
    """r1's ``multihome_uplinks`` from the lab inventory with CHANGES merged per uplink name."""
    host_vars = yaml.safe_load((lab.inventory / "host_vars" / "r1.yml").read_text())
    return [dict(up, **changes.get(up["name"], {})) for up in host_vars["multihome_uplinks"]]


def converge(lab: Lab, changes: Dict[str, dict], extra: Optional[dict] = None):
    """site.yml with r1's uplinks changed as CHANGES says."""
    return lab.playbook("-e", json.dumps({"multihome_uplinks": uplinks_with(lab, changes), **(extra or {})}))


class EchoDelay:
    """``lab/echo_delay.py`` answering echo requests in NODE in place of its kernel:
    ``slow()`` delays the replies to SOURCES by DELAY_MS, ``fast()`` ends that, with no
    gap in the answers (LSM would see a gap as lost probes)."""

    def __init__(self, lab: Lab, sources: List[str], delay_ms: int, node: str = "inet") -> None:
        self.lab, self.node = lab, node
        self.proc = lab.popen(node, [sys.executable, str(ECHO_DELAY), "--delay-ms", str(delay_ms),
                                     *[arg for s in sources for arg in ("--slow", s)]])
        assert self.proc.stdout is not None
        if json.loads(self.proc.stdout.readline() or "{}") != {"ready": True}:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"echo_delay did not start: {err}")
        lab.run(node, ["sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=1"])

    def slow(self) -> None:
        self.proc.send_signal(signal.SIGUSR1)

    def fast(self) -> None:
        self.proc.send_signal(signal.SIGUSR2)

    def stop(self) -> None:
        self.lab.run(self.node, ["sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=0"])
        self.proc.terminate()
        self.proc.wait(timeout=5)


@contextmanager
def echo_delay(lab: Lab, sources: List[str], delay_ms: int) -> Iterator[EchoDelay]:
    responder = EchoDelay(lab, sources, delay_ms)
    try:
        yield responder
    finally:
        responder.stop()


def states(lab: Lab) -> Dict[str, tuple]:
    """r1's uplinks as ``multihome status --json`` shows them: {name: (state, reason)}."""
    out = lab.run("r1", ["multihome", "status", "--json"]).stdout
    return {u["name"]: (u["state"], u["reason"]) for u in json.loads(out)["uplinks"]}


def event_log(lab: Lab) -> List[str]:
    return lab.run("r1", ["cat", EVENTS]).stdout.splitlines()


def healthy(lab: Lab) -> None:
    """Every ISP fault cleared and both uplinks up again (LSM has seen them answer)."""
    for isp in ("isp1", "isp2"):
        lab.isp_clear_faults(isp)
    assert wait_for(lambda: states(lab) == {"isp1": ("up", "ok"), "isp2": ("up", "ok")}, 20), states(lab)
