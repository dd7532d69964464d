#!/usr/bin/env python3
"""Boot to first LAN flow on a systemd-booted router (the lab's `systemd` topology).

    python3 bench/boot.py [--release trixie|bookworm] [--runs 5]

Converges the router once, then power-cycles it RUNS times (clean shutdown, fresh network
namespace so the kernel has no route, rule or ruleset left, boot from the same disk) and
measures from power-on: sshd answering (the OS is up: the reference) and the first new
LAN flow from c1 that reaches the internet server (netops-multihome-restore.service has
applied forwarding, tables, rules, balancing and NAT; the router forwards nothing before).
Prints medians, their ratio, and the per-run figures as JSON. Builds its own lab (name
from MHLAB_NAME, suffix `b`); the root file system build (about 30 s, cached) is not timed.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from harness import Lab, lab_name  # noqa: E402


def first_flow(lab: Lab, timeout: float = 60.0) -> float:
    """Seconds until one new flow from c1 gets an answer."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if not lab.flows("c1", 1, timeout=0.3)[0].startswith("error"):
            return time.monotonic() - start
    raise SystemExit(f"no LAN flow within {timeout:.0f} s of the reboot")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--release", default="trixie", choices=["bookworm", "trixie"])
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    lab = Lab(lab_name("mhbt", "b"), "systemd", args.release)
    lab.down()
    lab.up()
    try:
        converge = lab.playbook()
        if converge.returncode != 0:
            raise SystemExit("converge failed:\n" + converge.stdout[-3000:])
        runs = []
        for _ in range(args.runs):
            to_sshd = lab.reboot()
            runs.append({"sshd_s": round(to_sshd, 3), "first_flow_s": round(to_sshd + first_flow(lab), 3)})
    finally:
        lab.down()
    sshd = statistics.median(r["sshd_s"] for r in runs)
    flow = statistics.median(r["first_flow_s"] for r in runs)
    print(json.dumps({"release": args.release, "runs": runs, "median_sshd_s": sshd,
                      "median_first_flow_s": flow, "first_flow_over_sshd": round(flow / sshd, 2)}))
    print(f"{args.release}: power-on to sshd {sshd:.2f} s, to first LAN flow {flow:.2f} s "
          f"(x{flow / sshd:.2f}), median of {len(runs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
