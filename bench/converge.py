#!/usr/bin/env python3
"""Converge benchmark: site.yml on fleets of lab routers, against a trivial play.

    python3 bench/converge.py [--quick] [--routers 1,4,8] [--json FILE]

For each fleet size N (a generated lab of N routers, each with two uplinks and two LANs,
`lab/generate.py`) and each connection setting it builds a fresh lab and times, with
--forks 8 and the same connection settings:
  trivial   bench/trivial.yml: one `ansible.builtin.command: true` task per router
  first     playbooks/site.yml on plain routers
  nochange  site.yml again, nothing to change
  weight    site.yml after one weight change (isp1's weight 1 -> 2 on every router)
each in seconds and as a ratio to the trivial play, plus per router the tasks run (the
play recap) and the module round trips (SSH commands in the -vvv log).
Settings: `lab` (the lab's: pipelining on, SSH ControlPersist 60 s) and `bare`
(pipelining off, ControlMaster=no: one SSH connection per command).
--quick: 1 and 4 routers. Prints a table and writes JSON. Needs root.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "lab"))
import generate  # noqa: E402
from harness import Lab  # noqa: E402

TRIVIAL = ROOT / "bench" / "trivial.yml"
FORKS = "8"
SETTINGS: Dict[str, List[str]] = {
    "lab": [],
    "bare": ["-e", "ansible_pipelining=false", "-e", "ansible_ssh_args='-o ControlMaster=no'"],
}


def recap(output: str) -> Dict[str, Dict[str, int]]:
    """host -> {ok, changed, failed, skipped, ...} from a PLAY RECAP."""
    hosts = {}
    for m in re.finditer(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$", output.split("PLAY RECAP", 1)[-1], re.M):
        hosts[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return hosts


def round_trips(output: str) -> Dict[str, int]:
    """host address -> SSH commands (exec, put, fetch) ansible ran, from -vvv output."""
    counts: Dict[str, int] = {}
    for m in re.finditer(r"^<([\d.]+)> SSH: EXEC (?:ssh|sftp|scp)\b", output, re.M):
        counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    return counts


def tasks_per_host(stats: Dict[str, int]) -> int:
    return stats.get("ok", 0) + stats.get("failed", 0) + stats.get("skipped", 0) + stats.get("unreachable", 0)


def run(lab: Lab, extra: Sequence[str], playbook: Path | None = None) -> dict:
    start = time.monotonic()
    proc = lab.playbook("--forks", FORKS, "-vvv", *extra, playbook=playbook)
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"{playbook or 'site.yml'} failed on {lab.name}:\n{proc.stdout[-3000:]}")
    hosts = recap(proc.stdout)
    trips = round_trips(proc.stdout)
    return {"seconds": round(seconds, 2),
            "tasks_per_router": statistics.median(tasks_per_host(s) for s in hosts.values()),
            "changed_per_router": statistics.median(s.get("changed", 0) for s in hosts.values()),
            "round_trips_per_router": statistics.median(trips.values()) if trips else None}


def change_weight(lab: Lab) -> None:
    for path in (lab.inventory / "host_vars").glob("*.yml"):
        data = json.loads(path.read_text())
        data["multihome_uplinks"][0]["weight"] = 2
        path.write_text(json.dumps(data, indent=2) + "\n")


def fleet(routers: int, setting: str, workdir: Path, name: str) -> dict:
    topo = generate.write(workdir / f"fleet{routers}.json", routers, 2, 2, 1)
    lab = Lab(name, str(topo))
    lab.down()
    lab.up()
    extra = SETTINGS[setting]
    try:
        out = {"routers": routers, "setting": setting, "trivial": run(lab, extra, TRIVIAL)}
        out["first"] = run(lab, extra)
        out["nochange"] = run(lab, extra)
        change_weight(lab)
        out["weight"] = run(lab, extra)
    finally:
        lab.down()
    for key in ("first", "nochange", "weight"):
        out[key]["x_trivial"] = round(out[key]["seconds"] / out["trivial"]["seconds"], 2)
    return out


def table(results: List[dict]) -> str:
    head = (f"{'routers':>7} {'setting':<7} {'trivial s':>9} {'first s':>8} {'x':>5} "
            f"{'nochange s':>10} {'x':>5} {'weight s':>8} {'x':>5}  "
            f"{'tasks/router':>12} {'round trips/router':>18}")
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(
            f"{r['routers']:>7} {r['setting']:<7} {r['trivial']['seconds']:>9.1f} "
            + " ".join(f"{r[k]['seconds']:>{w}.1f} {r[k]['x_trivial']:>5.1f}"
                       for k, w in (("first", 8), ("nochange", 10), ("weight", 8)))
            + f"  {'/'.join(str(r[k]['tasks_per_router']) for k in ('first', 'nochange', 'weight')):>12}"
            f" {'/'.join(str(r[k]['round_trips_per_router']) for k in ('first', 'nochange', 'weight')):>18}")
    return "\n".join(lines) + "\n(tasks and round trips: first/nochange/weight)"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="1 and 4 routers")
    p.add_argument("--routers", help="comma-separated fleet sizes (default 1,4,8)")
    p.add_argument("--settings", default="lab,bare", help=f"comma-separated, of: {', '.join(SETTINGS)}")
    p.add_argument("--json", type=Path, help="default: bench/results/converge[-quick].json")
    args = p.parse_args()
    args.json = args.json or ROOT / "bench" / "results" / f"converge{'-quick' if args.quick else ''}.json"
    sizes = [int(x) for x in (args.routers or ("1,4" if args.quick else "1,4,8")).split(",")]
    settings = args.settings.split(",")
    if not set(settings) <= set(SETTINGS):
        p.error(f"--settings {args.settings}: allowed {', '.join(SETTINGS)}")
    name = os.environ.get("MHLAB_NAME", "bench")
    results = []
    with tempfile.TemporaryDirectory(prefix="mhbench-") as tmp:
        for n in sizes:
            for setting in settings:
                print(f"== {n} router(s), {setting}", file=sys.stderr, flush=True)
                results.append(fleet(n, setting, Path(tmp), name))
    report = {"bench": "converge", "forks": int(FORKS), "cpus": os.cpu_count(),
              "loadavg_at_end": os.getloadavg(), "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "settings": SETTINGS, "results": results}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(table(results))
    print(f"JSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
