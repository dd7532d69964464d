#!/usr/bin/env python3
"""HA benchmark: how fast and how harmless a takeover of the lab's VRRP pair is.

    python3 bench/ha.py [--runs 5] [--no-alternative]

Builds its own lab (topology ha_pair, name $MHLAB_NAME or `benchha`), applies site.yml,
then RUNS times: LAN streams on both uplinks and a new flow every 50 ms while the master
loses all its links at once. Per run: takeover (s until the backup owns every virtual
address), worst stall of an established stream (s), resets (count), new-flow recovery
(s until every new flow succeeds again). Medians are reported.

The alternative, measured in the same run on the same pair: VRRPv2 with 1 s adverts, the
timers VyOS uses by default. Beside both, computed from the documented defaults: VyOS
(VRRP, advert 1 s, priority 100: 3 x 1 + (256 - 100) / 256 s) and pfSense (CARP, advbase
1 s, the secondary's advskew 100: 3 x (1 + 100 / 256) s). Prints JSON and a table.
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
from harness import Lab, ha, recovery_time, wait_for  # noqa: E402


def vrrp_master_down(advert: float, priority: int) -> float:
    """RFC 5798 Master_Down_Interval: 3 x advert + skew, skew = (256 - priority) x advert / 256."""
    return 3 * advert + (256 - priority) * advert / 256


def carp_master_down(advbase: float, advskew: int) -> float:
    """CARP: a backup takes over after 3 missed adverts of interval advbase + advskew / 256."""
    return 3 * (advbase + advskew / 256)


def priority(lab: Lab, router: str) -> int:
    import yaml  # ansible-core's dependency, in the bench's venv

    host_vars = yaml.safe_load((lab.inventory / "host_vars" / f"{router}.yml").read_text())
    return int(host_vars["multihome_ha"]["priority"])


def converge(lab: Lab) -> None:
    proc = lab.playbook()
    if proc.returncode != 0:
        raise SystemExit(f"site.yml failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    if wait_for(lambda: ha.master(lab) is not None, 15) is None:
        raise SystemExit(f"no master after converge: {ha.roles(lab)}")


def one_takeover(lab: Lab) -> dict:
    old = ha.master(lab)
    new = ha.other(old)
    with lab.probing("c1", 12) as probe, lab.stream("c1", count=4, duration=10) as streams:
        time.sleep(1.5)
        event = time.monotonic()
        ha.cut_router(lab, old)
        took = ha.wait_master(lab, new, 15)
    ha.cut_router(lab, old, up=True)
    if wait_for(lambda: ha.ha_role(lab, old) == "BACKUP", 15) is None:
        raise SystemExit(f"{old} did not come back as backup: {ha.roles(lab)}")
    time.sleep(2)  # the returning router resyncs its external cache
    return {
        "takeover_s": took,
        "worst_stall_s": max(r["max_gap"] for r in streams.reports),
        "resets": sum(r["error"] is not None for r in streams.reports),
        "new_flow_recovery_s": recovery_time(probe.flows, event),
        "backup_priority": priority(lab, new),
    }


def measure(lab: Lab, runs: int) -> dict:
    samples: List[dict] = [one_takeover(lab) for _ in range(runs)]
    out: Dict[str, object] = {"runs": samples}
    for key in ("takeover_s", "worst_stall_s", "new_flow_recovery_s"):
        values = [s[key] for s in samples]
        out[key] = None if None in values else round(statistics.median(values), 3)
    out["resets"] = sum(s["resets"] for s in samples)
    return out


def use_vrrp2_one_second(lab: Lab) -> None:
    """The same pair with VyOS's default timers (the lab's inventory copy only)."""
    for router in ha.ROUTERS:
        path = lab.inventory / "host_vars" / f"{router}.yml"
        timers = "multihome_ha:\n  vrrp_version: 2\n  advert_interval: 1\n"
        path.write_text(path.read_text().replace("multihome_ha:\n", timers))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--no-alternative", action="store_true")
    args = p.parse_args()
    lab = Lab(os.environ.get("MHLAB_NAME", "benchha"), "ha_pair")
    lab.down()
    lab.up()
    results: Dict[str, object] = {}
    try:
        converge(lab)
        results["collection"] = measure(lab, args.runs)
        if not args.no_alternative:
            use_vrrp2_one_second(lab)
            converge(lab)
            results["vrrp2_1s_measured"] = measure(lab, args.runs)
    finally:
        lab.down()
    results["documented_defaults_s"] = {
        "vyos_vrrp_advert_1s_priority_100": round(vrrp_master_down(1, 100), 3),
        "pfsense_carp_advbase_1s_advskew_100": round(carp_master_down(1, 100), 3),
        "collection_vrrp3_advert_0.3s_priority_150": round(vrrp_master_down(0.3, 150), 3),
        "collection_vrrp3_advert_0.3s_priority_250": round(vrrp_master_down(0.3, 250), 3),
    }
    print(json.dumps(results, indent=2))
    print(table(results))
    return 0


def table(results: Dict[str, object]) -> str:
    rows = [f"{'setup':<34} {'takeover':>9} {'stall':>7} {'resets':>6} {'new flows':>9}"]
    for name in ("collection", "vrrp2_1s_measured"):
        r = results.get(name)
        if isinstance(r, dict):
            rows.append(f"{name:<34} {r['takeover_s']!s:>9} {r['worst_stall_s']!s:>7} {r['resets']!s:>6} "
                        f"{r['new_flow_recovery_s']!s:>9}")
    for name, value in results["documented_defaults_s"].items():  # type: ignore[union-attr]
        rows.append(f"{name:<34} {value:>9}   (computed takeover, s)")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
