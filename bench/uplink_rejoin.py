#!/usr/bin/env python3
"""Rejoin benchmark for dynamic and late uplinks (issue 12), on the lab's three_isp r1.

    MHLAB_NAME=bench python3 bench/uplink_rejoin.py [--runs 5]

Builds its own lab, makes isp2 a DHCP uplink and isp3 a point-to-point one
(tests/harness/uplinks.py), converges playbooks/site.yml, then measures RUNS times each
(median reported), with a new TCP flow from a LAN client every 50 ms:
  renumber   the ISP hands isp2 a new address and gateway -> first new LAN flow with the
             new source, from the moment the DHCP client installed the lease (s)
  recreate   isp3's interface deleted and re-created with another address -> first new
             LAN flow with the new source, from the moment the interface was up (s)
  failback   the alternative, measured in the same run: isp1's upstream cut until LSM says
             down, then restored -> first new LAN flow via isp1 (LSM's hold decides) (s)
The ratios renumber/failback and recreate/failback say how much faster the monitor's
repair and first answered probe return an uplink than LSM's verdict alone would.
Prints one JSON document and a table. Needs root; uses only the lab's namespaces.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))
from failover import wait_state  # noqa: E402
from harness import Lab, first_via  # noqa: E402
from harness.uplinks import (  # noqa: E402
    DHCP_FIRST,
    DHCP_GW_FIRST,
    DHCP_GW_NEXT,
    DHCP_NEXT,
    ISP1,
    P2P,
    converge_dynamic,
    p2p_link,
)


def renumber(lab: Lab, dhcp, run: int) -> float:
    leases = [(DHCP_NEXT, DHCP_GW_NEXT, 24), (DHCP_FIRST, DHCP_GW_FIRST, 30)]
    address, gateway, prefix = leases[run % 2]
    dhcp.serve(address, gateway, prefix)
    before = len(dhcp.lease_times(address))
    with lab.probing("c2", 8) as probe:
        time.sleep(0.5)
        dhcp.renumber()
        deadline = time.monotonic() + 6
        while len(dhcp.lease_times(address)) == before and time.monotonic() < deadline:
            time.sleep(0.05)
    leases = dhcp.lease_times(address)
    if len(leases) == before:
        raise SystemExit("no new lease")
    lease = leases[-1] - time.time() + time.monotonic()
    took = first_via(probe.flows, address, lease)
    if took is None:
        raise SystemExit(f"no new flow left with {address}")
    return took


def recreate(lab: Lab, run: int) -> float:
    local, peer = P2P[(run + 1) % 2]
    with lab.probing("c2", 6) as probe:
        time.sleep(0.5)
        p2p_link(lab, local, peer)
        created = time.monotonic()
    took = first_via(probe.flows, local, created)
    if took is None:
        raise SystemExit(f"no new flow left with {local}")
    return took


def failback(lab: Lab) -> float:
    lab.cut_upstream("isp1")
    wait_state(lab, "isp1", "down")
    with lab.probing("c2", 10) as probe:
        time.sleep(0.3)
        lab.restore_upstream("isp1")
        restored = time.monotonic()
        wait_state(lab, "isp1", "up")
        time.sleep(0.5)
    took = first_via(probe.flows, ISP1, restored)
    if took is None:
        raise SystemExit("isp1 never took new flows again")
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    lab = Lab(os.environ.get("MHLAB_NAME", "bench"), "three_isp")
    lab.down()
    lab.up()
    dhcp = converge_dynamic(lab)
    samples: Dict[str, List[float]] = {"renumber": [], "recreate": [], "failback": []}
    try:
        for run in range(args.runs):
            samples["renumber"].append(renumber(lab, dhcp, run))
            samples["recreate"].append(recreate(lab, run))
            samples["failback"].append(failback(lab))
    finally:
        dhcp.stop()
        lab.down()
    medians = {k: round(statistics.median(v), 3) for k, v in samples.items()}
    ratios = {f"{k}/failback": round(medians[k] / medians["failback"], 3) for k in ("renumber", "recreate")}
    report = {"runs": args.runs, "samples": samples, "median_s": medians, "ratios": ratios}
    print(json.dumps(report, indent=2))
    for key, value in medians.items():
        print(f"{key:10s} median {value:.3f} s")
    for key, value in ratios.items():
        print(f"{key:19s} {value:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
