#!/usr/bin/env python3
"""Generate a lab topology of any size, with the role variables that drive it.

    generate.py --out DIR/NAME.json [--routers 1] [--uplinks 2] [--lans 2] [--prefixes 1]

Writes NAME.json (for `mhlab.py up --topology DIR/NAME.json`) and NAME/group_vars,
NAME/host_vars beside it (mhlab copies them into the lab's inventory). Each router gets
UPLINKS uplinks (one ISP each, shared by all routers) and LANS LANs; each LAN lists
PREFIXES IPv4 prefixes in the role's `multihome_lans`: PREFIXES-1 extra /24s in 10.0.0.0/8
first, then the LAN's own /24 last (so a per-prefix rule list is walked to its end), plus
one IPv6 /64 per uplink from that uplink's delegation. Standard library only.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))
from addressing import MAX_ISPS, SERVER4, Plan, build_plan

# The targets LSM probes through every uplink (two: an uplink is down only when both fail).
TARGETS = SERVER4[:2]
GROUP_VARS = {
    "multihome_balance_mode": "round_robin",
    "multihome_backend": "nftables",
    "multihome_monitor_profile": "fast",
    "multihome_lab_targets": TARGETS,
    "ansible_pipelining": True,
}
MAX_LANS = 9  # LAN n of router r is 192.168.(10(r-1)+n).0/24
MAX_PREFIXES = 256


def topology(routers: int, uplinks: int, lans: int) -> dict:
    for option, value, top in (("--uplinks", uplinks, MAX_ISPS), ("--lans", lans, MAX_LANS),
                               ("--routers", routers, 16)):
        if not 1 <= value <= top:
            raise ValueError(f"{option} {value}: allowed 1 to {top}")
    isps = [f"isp{k}" for k in range(1, uplinks + 1)]
    return {
        "description": f"generated: {routers} router(s), {uplinks} uplinks, {lans} LANs each",
        "isps": isps,
        "routers": {f"r{r}": {"uplinks": isps, "lans": lans} for r in range(1, routers + 1)},
    }


def extra_prefixes(router_index: int, lan_index: int, count: int) -> List[str]:
    """COUNT /24s of 10.0.0.0/8 owned by one LAN, disjoint from every other LAN's."""
    if not 0 <= count < MAX_PREFIXES:
        raise ValueError(f"--prefixes {count + 1}: allowed 1 to {MAX_PREFIXES}")
    second = MAX_LANS * (router_index - 1) + lan_index
    return [f"10.{second}.{i}.0/24" for i in range(count)]


def host_vars(plan: Plan, router: str, prefixes: int) -> dict:
    r = plan.routers[router]
    uplinks = [
        {
            "name": u.isp,
            "interface": u.router_if,
            "address": u.address4,
            "gateway": u.gateway4,
            "address6": u.address6,
            "gateway6": u.gateway6,
            "source_prefixes": [u.delegated6],
            "weight": 1,
            "targets": "{{ multihome_lab_targets }}",
        }
        for u in r.uplinks
    ]
    lans = []
    for n, lan in enumerate(r.lans, start=1):
        own4 = lan.router4.rsplit(".", 1)[0] + ".0/24"
        own6 = [a.replace("::1/64", "::/64") for a in lan.router6 if not a.startswith("fd")]
        lans.append({
            "name": lan.name,
            "interface": lan.name,
            "prefixes": [*extra_prefixes(r.index, n, prefixes - 1), own4, *own6],
        })
    return {"multihome_uplinks": uplinks, "multihome_lans": lans}


def write(out: Path, routers: int, uplinks: int, lans: int, prefixes: int) -> Path:
    """Write the topology file and its role variables; return the topology file's path."""
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(topology(routers, uplinks, lans), indent=2) + "\n")
    plan = build_plan(str(out))
    vars_dir = out.with_name(out.stem)
    files: Dict[Path, dict] = {vars_dir / "group_vars" / "routers.yml": GROUP_VARS}
    for router in plan.routers:
        files[vars_dir / "host_vars" / f"{router}.yml"] = host_vars(plan, router, prefixes)
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        # JSON is valid YAML; keeps the lab free of third-party modules.
        path.write_text(json.dumps(data, indent=2) + "\n")
    return out


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, type=Path, help="the topology file to write (NAME.json)")
    p.add_argument("--routers", type=int, default=1)
    p.add_argument("--uplinks", type=int, default=2)
    p.add_argument("--lans", type=int, default=2)
    p.add_argument("--prefixes", type=int, default=1, help="IPv4 prefixes per LAN")
    args = p.parse_args(argv)
    if args.out.suffix != ".json":
        p.error(f"--out {args.out}: give a file name ending in .json")
    try:
        print(write(args.out, args.routers, args.uplinks, args.lans, args.prefixes))
    except ValueError as exc:
        print(f"generate: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
