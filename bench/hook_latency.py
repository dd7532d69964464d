#!/usr/bin/env python3
"""Failover hook latency and conntrack at scale, on a converged lab router.

    python3 bench/hook_latency.py [--quick] [--events 100] [--flows 50000] [--json FILE]

Builds its own lab (default topology), converges it with playbooks/site.yml, then on r1:
  hook       runs the failover hook exactly as LSM does (its path, LSM's 16 positional
             arguments), EVENTS times, isp1 down/up in turn, with the monitor answering on
             its socket. Per event: event -> first ruleset change seen by `nft monitor`
             in the kernel, the hook process's wall time, and the engine's own `ms=` from
             the event log; p50/p95 of each.
  conntrack  FLOWS tracked UDP flows from c1 to inet, balanced (so marked) by our ruleset,
             half on isp1. Then, each on a fresh table: the collection's dead-uplink
             deletion (the hook's isp1 down event) with the entries deleted and the isp2
             entries checked untouched; `conntrack -D --mark M/MASK` (what the engine runs)
             and `--mark M` timed and counted under strace (does the tool filter in the
             kernel or delete entry by entry from userspace?); `conntrack -L` dumps for
             comparison; `multihome status` and `multihome status --json`.
--quick: 20 events, 10 000 flows. Prints a table and writes JSON. Needs root.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import queue
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
HOOK = "/usr/local/lib/netops-multihome/multihome-hook"
INTERPRETER = "/usr/bin/python3"  # the hook's #! line
EVENTS_LOG = "/var/log/netops-multihome/events.log"
UDP_BASE_PORT = 10000


def lsm_argv(state: str, name: str, prev: str) -> List[str]:
    """LSM's eventscript arguments for a group event (per-probe fields empty)."""
    return [state, name, *[""] * 12, prev, str(int(time.time()))]


# ---------------------------------------------------------------- inside the router

def drive(events: int) -> dict:
    """Run the hook EVENTS times (isp1 down, up, down...) and time each against the
    first ruleset notification from the kernel (runs inside r1)."""
    mon = subprocess.Popen(["stdbuf", "-oL", "nft", "monitor", "ruleset"], stdout=subprocess.PIPE, text=True)
    seen: queue.Queue = queue.Queue()

    def reader() -> None:
        assert mon.stdout is not None
        for _line in mon.stdout:
            seen.put(time.monotonic())

    threading.Thread(target=reader, daemon=True).start()
    time.sleep(0.5)
    kernel, hook, interpreter = [], [], []
    try:
        for i in range(events):
            state, prev = ("down", "up") if i % 2 == 0 else ("up", "down")
            while not seen.empty():
                seen.get()
            # LSM's timestamp has one-second resolution: an event stamped in one second and
            # parsed in the next is older than one parsed earlier in that second, and the
            # engine rightly ignores it as stale. Stay clear of the second's end.
            frac = time.time() % 1
            if frac > 0.8:
                time.sleep(1.01 - frac)
            t0 = time.monotonic()
            rc = subprocess.run([HOOK, *lsm_argv(state, "isp1", prev)]).returncode
            t1 = time.monotonic()
            if rc != 0:
                raise SystemExit(f"hook {state} isp1 failed rc={rc}")
            try:
                first = seen.get(timeout=5)
            except queue.Empty:
                raise SystemExit(f"event {i} ({state}): no ruleset change within 5 s") from None
            kernel.append(round((first - t0) * 1000, 2))
            hook.append(round((t1 - t0) * 1000, 2))
            # The floor of any Python hook, in the same conditions: its interpreter alone.
            t2 = time.monotonic()
            subprocess.run([INTERPRETER, "-IS", "-c", "pass"], check=True)
            interpreter.append(round((time.monotonic() - t2) * 1000, 2))
            time.sleep(0.1)
    finally:
        mon.kill()
    return {"event_to_kernel_ms": kernel, "hook_process_ms": hook, "interpreter_ms": interpreter}


# ---------------------------------------------------------------- from the host

def pct(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def monitor_times(log_lines: Sequence[str]) -> Tuple[List[float], List[float]]:
    """For each event the monitor handled (`via=monitor`): the engine's `ms=`, and the
    hook process's own share before the hand-over, `process_ms=` (hook start to applied)
    minus `ms=`."""
    engine, own = [], []
    for line in log_lines:
        found = re.search(r"\bms=([\d.]+).*\bprocess_ms=([\d.]+)", line)
        if found and "via=monitor" in line:
            engine.append(float(found.group(1)))
            own.append(round(float(found.group(2)) - float(found.group(1)), 1))
    return engine, own


def uplink_mark(ip_rules: str, uplink: str) -> Tuple[int, int]:
    """(mark, mask) of UPLINK's fwmark policy rule in `ip rule` output."""
    found = re.search(rf"fwmark (0x[0-9a-f]+)/(0x[0-9a-f]+) lookup (?:\S*_)?{uplink}\s*$", ip_rules, re.M)
    if not found:
        raise ValueError(f"no fwmark rule for {uplink} in:\n{ip_rules}")
    return int(found.group(1), 16), int(found.group(2), 16)


def strace_counts(summary: str) -> Dict[str, int]:
    """syscall -> calls from `strace -c` output."""
    counts = {}
    for line in summary.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[-1].isidentifier() and parts[3].isdigit() and parts[-1] != "total":
            counts[parts[-1]] = int(parts[3])
    return counts


def dports(conntrack_list: str) -> List[int]:
    """The original-direction destination port of each entry in `conntrack -L` output that
    the bench's UDP flows made (other traffic, such as the probes, left out)."""
    first = re.compile(r"^\S+\s+\d+\s+\d+\s.*?dport=(\d+)", re.M)
    ports = (int(m.group(1)) for m in first.finditer(conntrack_list))
    return sorted(p for p in ports if p >= UDP_BASE_PORT)


def new_flows(flows: Sequence[list], start: float, end: float) -> dict:
    """New TCP flows opened (every 20 ms) while a deletion ran: how many, how many failed,
    and the longest time between two successful ones (s)."""
    during = [(t, r) for t, r in flows if start <= t <= end]
    ok = [t for t, r in flows if not r.startswith("error")]
    gaps = [b - a for a, b in zip(ok, ok[1:]) if b >= start and a <= end]
    return {"opened": len(during), "failed": sum(r.startswith("error") for _, r in during),
            "max_gap_s": round(max(gaps), 3) if gaps else None}


class Bench:
    def __init__(self, lab, flows: int) -> None:
        self.lab, self.flows = lab, flows
        rules = lab.run("r1", ["ip", "rule"]).stdout
        self.marks = {u: uplink_mark(rules, u) for u in ("isp1", "isp2")}

    def r1(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.lab.run("r1", list(cmd), check=check, timeout=300)

    def timed(self, *cmd: str) -> Tuple[float, subprocess.CompletedProcess]:
        start = time.monotonic()
        proc = self.r1(*cmd, check=False)
        return round(time.monotonic() - start, 3), proc

    def on(self, uplink: str) -> str:
        mark, mask = self.marks[uplink]
        return self.r1("conntrack", "-L", "-f", "ipv4", "--mark", f"{mark:#x}/{mask:#x}", check=False).stdout

    def populate(self) -> Dict[str, int]:
        """A fresh table holding FLOWS UDP flows from c1, balanced by our ruleset."""
        self.r1("conntrack", "-F", check=False)
        sender = ("import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                  f"for p in range({UDP_BASE_PORT},{UDP_BASE_PORT}+int(sys.argv[1])):\n"
                  "    s.sendto(b'x',('203.0.113.10',p))\n")
        for _ in range(5):  # a few datagrams may be dropped on the way; send again
            self.lab.run("c1", [sys.executable, "-c", sender, str(self.flows)], timeout=300)
            counts = {u: len(self.on(u).splitlines()) for u in self.marks}
            if sum(counts.values()) >= self.flows:
                return counts
        raise SystemExit(f"only {counts} of {self.flows} flows tracked on r1")

    def hook_delete(self) -> dict:
        counts = self.populate()
        before = dports(self.on("isp2"))
        with self.lab.probing("c2", duration=4, interval=0.02) as probe:
            time.sleep(1)
            started = time.monotonic()
            wall, proc = self.timed(HOOK, *lsm_argv("down", "isp1", "up"))
            ended = time.monotonic()
        line = self.r1("tail", "-n", "1", EVENTS_LOG).stdout.strip()
        after = {u: len(self.on(u).splitlines()) for u in self.marks}
        untouched = dports(self.on("isp2")) == before
        self.r1(HOOK, *lsm_argv("up", "isp1", "down"))
        found = re.search(r"flows_deleted=(\d+).*?\bms=([\d.]+)", line)
        return {"before": counts, "after": after, "isp2_entries_identical": untouched,
                "hook_rc": proc.returncode, "hook_wall_s": wall,
                "flows_deleted": int(found.group(1)) if found else None,
                "engine_ms": float(found.group(2)) if found else None, "log": line,
                "new_flows_during_deletion": new_flows(probe.flows, started, ended)}

    def conntrack_delete(self, with_mask: bool) -> dict:
        mark, mask = self.marks["isp1"]
        spec = f"{mark:#x}/{mask:#x}" if with_mask else f"{mark:#x}"
        cmd = ["conntrack", "-D", "-f", "ipv4", "--mark", spec]
        walls, untouched = [], True
        for _ in range(3):
            counts = self.populate()
            before = dports(self.on("isp2"))
            walls.append(self.timed(*cmd)[0])
            untouched = untouched and dports(self.on("isp2")) == before
        wall = statistics.median(walls)
        self.populate()
        traced = self.r1("strace", "-f", "-c", "-o", "/dev/stdout", "-q", *cmd, check=False).stdout
        calls = strace_counts(traced)
        return {"command": " ".join(cmd), "before": counts, "wall_s": wall, "wall_samples_s": walls,
                "isp2_entries_identical": untouched,
                "syscalls": {k: v for k, v in calls.items() if k.startswith(("send", "recv"))}}

    def dumps(self) -> dict:
        self.populate()
        mark, mask = self.marks["isp1"]
        out = {}
        for label, extra in (("all", []), ("isp1 mark", ["--mark", f"{mark:#x}/{mask:#x}"])):
            wall, proc = self.timed("conntrack", "-L", "-f", "ipv4", *extra)
            traced = strace_counts(self.r1("strace", "-c", "-o", "/dev/stdout", "-q", "conntrack", "-L",
                                           "-f", "ipv4", *extra, check=False).stdout)
            out[label] = {"wall_s": wall, "entries": len(proc.stdout.splitlines()),
                          "recv_calls": sum(v for k, v in traced.items() if k.startswith("recv"))}
        return out

    def status(self, runs: int = 3) -> dict:
        self.populate()
        out = {}
        for label, cmd in (("multihome status", ["multihome", "status"]),
                           ("multihome status --json", ["multihome", "status", "--json"]),
                           ("conntrack -L (one text read, floor)", ["conntrack", "-L", "-f", "ipv4"])):
            out[label] = statistics.median(self.timed(*cmd)[0] for _ in range(runs))
        flows = json.loads(self.r1("multihome", "status", "--json").stdout)
        out["flows_reported"] = {u["name"]: u.get("flows") for u in flows["uplinks"]}
        return out


def hook_section(lab, events: int) -> dict:
    lab.run("r1", ["sh", "-c", f": > {EVENTS_LOG}"])
    out = lab.run("r1", [sys.executable, str(Path(__file__).resolve()), "_drive", "--events", str(events)],
                  timeout=events * 10 + 60).stdout
    data = json.loads(out)
    log = lab.run("r1", ["cat", EVENTS_LOG]).stdout.splitlines()
    data["engine_ms"], data["hook_own_ms"] = monitor_times(log)
    summary = {}
    for key in ("event_to_kernel_ms", "hook_process_ms", "engine_ms", "hook_own_ms", "interpreter_ms"):
        values = data.get(key)
        summary[key] = ({"p50": pct(values, 0.5), "p95": pct(values, 0.95), "n": len(values)}
                        if values else None)
    return {"summary": summary, "samples": data}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd")
    dr = sub.add_parser("_drive")
    dr.add_argument("--events", type=int, required=True)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--events", type=int)
    p.add_argument("--flows", type=int)
    p.add_argument("--json", type=Path, help="default: bench/results/hook_latency[-quick].json")
    args = p.parse_args()
    args.json = args.json or ROOT / "bench" / "results" / f"hook_latency{'-quick' if args.quick else ''}.json"
    if args.cmd == "_drive":
        print(json.dumps(drive(args.events)))
        return 0
    events = args.events or (20 if args.quick else 100)
    flows = args.flows or (10000 if args.quick else 50000)

    sys.path.insert(0, str(ROOT / "tests"))
    from harness import Lab

    lab = Lab(os.environ.get("MHLAB_NAME", "bench"), "default")
    lab.down()
    lab.up()
    try:
        proc = lab.playbook()
        if proc.returncode != 0:
            raise SystemExit(f"site.yml failed:\n{proc.stdout[-3000:]}")
        time.sleep(3)  # the monitor's first verdicts
        report: dict = {"bench": "hook_latency", "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
                        "cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg(),
                        "hook": hook_section(lab, events)}
        # Long enough that no entry expires during the measurements.
        lab.run("r1", ["sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout=3600"])
        bench = Bench(lab, flows)
        report["conntrack"] = {
            "flows": flows,
            "marks": {u: [hex(m), hex(k)] for u, (m, k) in bench.marks.items()},
            "hook_delete": bench.hook_delete(),
            "delete_mark_mask": bench.conntrack_delete(with_mask=True),
            "delete_mark": bench.conntrack_delete(with_mask=False),
            "dumps": bench.dumps(),
            "status_s": bench.status(),
        }
    finally:
        lab.down()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(f"JSON: {args.json}")
    return 0


def table(report: dict) -> str:
    events = report["hook"]["summary"]["hook_process_ms"]["n"]
    lines = [f"{f'hook ({events} events)':<44} {'p50':>8} {'p95':>8}"]
    for key, label in (("event_to_kernel_ms", "event -> ruleset in kernel (ms)"),
                       ("hook_process_ms", "hook process wall time (ms)"),
                       ("engine_ms", "engine in the monitor, ms= (ms)"),
                       ("hook_own_ms", "hook's own: process_ms= - ms= (ms)"),
                       ("interpreter_ms", "python3 -IS -c pass, same run (ms)")):
        s = report["hook"]["summary"].get(key)
        lines.append(f"  {label:<42} {s['p50']:>8.1f} {s['p95']:>8.1f}" if s else f"  {label:<42} {'-':>8}")
    ct = report["conntrack"]
    hd = ct["hook_delete"]
    lines.append(f"conntrack, {ct['flows']} flows {hd['before']}")
    lines.append(f"  hook isp1 down: {hd['hook_wall_s']:.2f} s wall, engine {hd['engine_ms']} ms, "
                 f"deleted {hd['flows_deleted']}, after {hd['after']}, "
                 f"isp2 untouched: {hd['isp2_entries_identical']}")
    if "new_flows_during_deletion" in hd:
        lines.append(f"  new flows from c2 meanwhile: {hd['new_flows_during_deletion']}")
    for key in ("delete_mark_mask", "delete_mark"):
        d = ct[key]
        lines.append(f"  {d['command']}: {d['wall_s']:.2f} s, isp2 untouched: {d['isp2_entries_identical']}, "
                     f"syscalls {d['syscalls']}")
    for label, d in ct["dumps"].items():
        lines.append(f"  conntrack -L ({label}): {d['wall_s']:.2f} s, {d['entries']} entries, "
                     f"{d['recv_calls']} recv calls")
    for label, secs in ct["status_s"].items():
        if label != "flows_reported":
            lines.append(f"  {label}: {secs:.2f} s")
    lines.append(f"  flows reported by status: {ct['status_s']['flows_reported']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
