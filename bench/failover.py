#!/usr/bin/env python3
"""Failover benchmark: how fast, how calm and how harmless failover is on the lab.

    python3 bench/failover.py [--runs 5] [--loss-seconds 600] [--only upstream,carrier,...]

Builds its own lab (name `bench`), applies playbooks/site.yml with the role defaults, then
measures, each scenario RUNS times (median reported):
  upstream   cut isp1 beyond the router's link -> new LAN flows all succeed again (s)
  carrier    isp1's port facing the router goes down -> same (s)
  failback   isp1's upstream restored -> first new LAN flow via isp1 again (s)
  flap       isp1 upstream toggled every 2 s for 30 s -> down events (count)
  loss       20% random loss both ways on isp1 for --loss-seconds -> down events (count)
  harmless   streams on the live uplink during failover+failback, a site.yml re-run with a
             changed weight and `multihome apply` -> worst stall (s) and resets (count)
Prints one JSON document and a table. Needs root; uses only the lab's namespaces.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from harness import Lab, first_via, recovery_time  # noqa: E402

ISP1, ISP2 = "198.51.100.2", "198.51.100.6"
TARGETS = {"upstream": 2.0, "carrier": 0.5, "failback": 5.0, "flap": 1, "loss": 0, "harmless": 1.0}


def playbook(lab: Lab, *extra: str) -> None:
    proc = lab.playbook(*extra)
    if proc.returncode != 0:
        raise SystemExit(f"site.yml failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")


def states(lab: Lab) -> Dict[str, str]:
    out = lab.run("r1", ["multihome", "status", "--json"]).stdout
    return {u["name"]: u["state"] for u in json.loads(out)["uplinks"]}


def wait_state(lab: Lab, uplink: str, state: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while states(lab).get(uplink) != state:
        if time.monotonic() > deadline:
            raise SystemExit(f"{uplink} did not become {state} within {timeout}s")
        time.sleep(0.1)


class DownCounter:
    """Counts up->down transitions of one uplink by polling `multihome status`."""

    def __init__(self, lab: Lab, uplink: str) -> None:
        self.lab, self.uplink = lab, uplink
        self.downs = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def loop(self) -> None:
        last = "up"
        while not self.stop.is_set():
            now = states(self.lab).get(self.uplink, last)
            if last == "up" and now == "down":
                self.downs += 1
            last = now
            time.sleep(0.1)

    def __enter__(self) -> DownCounter:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(2)


def settle(lab: Lab) -> None:
    lab.restore_upstream("isp1")
    lab.carrier_up("isp1")
    lab.isp_clear_faults("isp1")
    wait_state(lab, "isp1", "up")
    wait_state(lab, "isp2", "up")


def phase() -> None:
    """Faults do not wait for LSM's once-a-second decision: start each one at a random
    point of that second (settle() ends right after a decision, which would otherwise
    put every fault at the same phase and bias the median)."""
    time.sleep(1 + JITTER.random())


JITTER = random.Random(7)


def upstream(lab: Lab) -> float:
    with lab.probing("c1", duration=8) as probe:
        phase()
        event = time.monotonic()
        lab.cut_upstream("isp1")
        time.sleep(5.5)
    settle(lab)
    return recovery_time(probe.flows, event) or float("inf")


def carrier(lab: Lab) -> float:
    with lab.probing("c1", duration=6) as probe:
        phase()
        event = time.monotonic()
        lab.carrier_down("isp1")
        time.sleep(3.5)
    settle(lab)
    return recovery_time(probe.flows, event) or float("inf")


def failback(lab: Lab) -> float:
    lab.cut_upstream("isp1")
    wait_state(lab, "isp1", "down")
    with lab.probing("c1", duration=13) as probe:
        phase()
        event = time.monotonic()
        lab.restore_upstream("isp1")
        time.sleep(11)
    settle(lab)
    return first_via(probe.flows, ISP1, event) or float("inf")


def flap(lab: Lab) -> int:
    with DownCounter(lab, "isp1") as counter:
        for _ in range(8):  # 2 s down, 2 s up: about 30 s of flapping
            lab.cut_upstream("isp1")
            time.sleep(2)
            lab.restore_upstream("isp1")
            time.sleep(2)
    settle(lab)
    return counter.downs


def loss(lab: Lab, seconds: float) -> int:
    lab.isp_drop("isp1", 20, syn_only=False)
    with DownCounter(lab, "isp1") as counter:
        time.sleep(seconds)
    settle(lab)
    return counter.downs


def harmless(lab: Lab) -> dict:
    host_vars = lab.inventory / "host_vars" / "r1.yml"
    import yaml  # ansible-core's dependency, in the bench's venv

    uplinks = yaml.safe_load(host_vars.read_text())["multihome_uplinks"]
    uplinks[1]["weight"] = 2
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as extra:
        json.dump({"multihome_uplinks": uplinks}, extra)
    worst, resets, watched = 0.0, 0, 0
    with lab.stream("c1", count=12, duration=40, interval=0.05) as s:
        time.sleep(1)
        lab.cut_upstream("isp1")
        wait_state(lab, "isp1", "down")
        lab.restore_upstream("isp1")
        wait_state(lab, "isp1", "up")
        playbook(lab, "-e", f"@{extra.name}")
        lab.run("r1", ["multihome", "apply"])
    for rep in s.reports:
        if rep["sources"] == [ISP2]:
            watched += 1
            worst = max(worst, rep["max_gap"])
            resets += rep["error"] is not None
    playbook(lab)  # back to the inventory's weights
    os.unlink(extra.name)
    return {"worst_stall": worst, "resets": resets, "streams_on_live_uplink": watched}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--loss-seconds", type=float, default=600)
    p.add_argument("--only", default="upstream,carrier,failback,flap,loss,harmless")
    args = p.parse_args()
    wanted = args.only.split(",")
    lab = Lab(os.environ.get("MHLAB_NAME", "bench"), "default").up()
    results: Dict[str, dict] = {}
    try:
        playbook(lab)
        wait_state(lab, "isp1", "up")
        timed: Dict[str, Callable[[Lab], float]] = {"upstream": upstream, "carrier": carrier,
                                                    "failback": failback}
        for name, fn in timed.items():
            if name in wanted:
                samples = [fn(lab) for _ in range(args.runs)]
                results[name] = {"median_s": statistics.median(samples), "samples_s": samples,
                                 "target_s": TARGETS[name]}
        if "flap" in wanted:
            results["flap"] = {"down_events": flap(lab), "target": TARGETS["flap"]}
        if "loss" in wanted:
            results["loss"] = {"down_events": loss(lab, args.loss_seconds),
                               "seconds": args.loss_seconds, "target": TARGETS["loss"]}
        if "harmless" in wanted:
            results["harmless"] = {**harmless(lab), "target_stall_s": TARGETS["harmless"]}
    finally:
        lab.down()
    print(json.dumps(results, indent=2))
    print(table(results))
    return 0


def table(results: Dict[str, dict]) -> str:
    rows = ["scenario   result                        target"]
    for name, r in results.items():
        if "median_s" in r:
            got: Optional[str] = f"median {r['median_s']:.2f} s ({len(r['samples_s'])} runs)"
            target = f"<= {r['target_s']} s"
        elif name == "harmless":
            got = f"worst stall {r['worst_stall']:.2f} s, {r['resets']} resets"
            target = f"< {r['target_stall_s']} s, 0 resets"
        else:
            got = f"{r['down_events']} down events"
            target = f"{r['target']}"
        rows.append(f"{name:<10} {got:<29} {target}")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
