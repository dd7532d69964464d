#!/usr/bin/env python3
"""Data-path benchmark: what our ruleset costs a forwarding router, against plain masquerade.

    python3 bench/dataplane.py [--quick] [--rounds 3] [--seconds 5] [--json FILE]

For each case (U uplinks, L LANs, P IPv4 prefixes per LAN; U in 2, 8, 16, L in 2, 8,
P in 1, 64; --quick: the smallest and the largest case only) it builds a generated lab
(`lab/generate.py`), converges it with playbooks/site.yml, then measures on router r1,
ROUNDS times, interleaved (ours, plain, [article], ours, plain, ...):
  throughput  TCP bulk from LAN client c1 to inet (iperf3, 4 parallel streams, SECONDS)
  conn/s      new short TCP connections from c1 to inet (bench/connrate.py, 4 processes)
Variants: `ours` (the converged ruleset), `plain` (the same router, its ruleset replaced
by one `masquerade` rule; routing unchanged, so every flow leaves by main's default
route), `ours-1` (our ruleset with every new flow chosen for that same uplink: the rules'
cost without the lab's spreading of flows over U ISP namespaces), and for U=2, L=2
`article` (the article's iptables wiring from bench/article_reference.py on a second lab
of the same shape). Reports medians and the ratios to plain (median of the per-round
ratios), then how ours/plain changes from U=2 to U=16 and from P=1 to P=64.
Needs root; uses only the labs' namespaces.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "lab"))
sys.path.insert(0, str(ROOT / "bench"))
import generate  # noqa: E402
from article_reference import install as install_article  # noqa: E402
from harness import SERVER4, Lab  # noqa: E402

IPERF_PORT, CONN_PORT = 5202, 5201
STREAMS, CONN_WORKERS = 4, 4
PLAIN = 'flush ruleset\ntable ip plain {\n  chain post {\n    type nat hook postrouting priority srcnat;\n' \
        '    oifname "wan*" masquerade\n  }\n}\n'
Case = Tuple[int, int, int]
FULL: List[Case] = list(itertools.product((2, 8, 16), (2, 8), (1, 64)))
QUICK: List[Case] = [(2, 2, 1), (16, 8, 64)]


def case_name(case: Case) -> str:
    return "U{}-L{}-P{}".format(*case)


class Router:
    """One measured router: how to switch it to a variant and what its ruleset then is."""

    def __init__(self, lab: Lab, rulesets: Dict[str, str]) -> None:
        self.lab = lab
        self.rulesets = rulesets  # variant -> text for `nft -f -` (None: leave as is)
        self.tables: Dict[str, str] = {}

    def switch(self, variant: str) -> None:
        text = self.rulesets[variant]
        if text is not None:
            self.lab.run("r1", ["nft", "-f", "-"], stdin=text)
        tables = self.lab.run("r1", ["nft", "list", "tables"]).stdout
        expected = self.tables.setdefault(variant, tables)
        if tables != expected:
            raise SystemExit(f"r1's tables changed under variant {variant}:\n{tables}\nwas:\n{expected}")
        self.lab.run("r1", ["conntrack", "-F"], check=False)


@contextmanager
def servers(lab: Lab) -> Iterator[None]:
    """iperf3 and the connection-rate server in the lab's inet, for the block's duration."""
    procs = [
        subprocess.Popen(lab.argv("inet", ["iperf3", "-s", "-p", str(IPERF_PORT)]),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True),
        subprocess.Popen(lab.argv("inet", [sys.executable, str(ROOT / "bench" / "connrate.py"), "serve",
                                           "--port", str(CONN_PORT)]),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True),
    ]
    try:
        deadline = time.monotonic() + 10
        while not all(f":{p} " in lab.run("inet", ["ss", "-Hltn"]).stdout for p in (IPERF_PORT, CONN_PORT)):
            if time.monotonic() > deadline:
                raise SystemExit("iperf3 or connrate server did not start in inet")
            time.sleep(0.1)
        yield
    finally:
        for proc in procs:
            os.killpg(proc.pid, 9)
            proc.wait()


def throughput(lab: Lab, seconds: float) -> float:
    """Gbit/s received by the server over STREAMS parallel TCP streams from c1."""
    out = lab.run("c1", ["iperf3", "-c", SERVER4, "-p", str(IPERF_PORT), "-P", str(STREAMS),
                         "-t", str(seconds), "-J", "--connect-timeout", "3000"], timeout=seconds + 30).stdout
    return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9


def conn_rate(lab: Lab, seconds: float) -> float:
    out = lab.run("c1", [sys.executable, str(ROOT / "bench" / "connrate.py"), "run", "--dst", SERVER4,
                         "--port", str(CONN_PORT), "--workers", str(CONN_WORKERS), "--seconds", str(seconds)],
                  timeout=seconds + 30).stdout
    result = json.loads(out)
    if result["errors"] > result["connections"] // 100:
        raise SystemExit(f"too many failed connections: {result}")
    return result["rate"]


def converge(lab: Lab) -> float:
    start = time.monotonic()
    proc = lab.playbook()
    if proc.returncode != 0:
        raise SystemExit(f"site.yml failed on {lab.topology}:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    return time.monotonic() - start


def measure(routers: Dict[str, Router], rounds: int, seconds: float) -> Dict[str, Dict[str, List[float]]]:
    samples: Dict[str, Dict[str, List[float]]] = {v: {"gbps": [], "conn_per_s": []} for v in routers}
    for _ in range(rounds):
        for variant, router in routers.items():
            router.switch(variant)
            samples[variant]["gbps"].append(round(throughput(router.lab, seconds), 3))
            router.switch(variant)
            samples[variant]["conn_per_s"].append(conn_rate(router.lab, seconds))
    return samples


def summarise(samples: Dict[str, Dict[str, List[float]]]) -> dict:
    """Medians per variant; "V/plain" is the median of the per-round ratios (each round's
    V over the same round's plain, measured back to back, so a drifting machine load
    cancels out), "V/plain of medians" the ratio of the medians."""
    med = {v: {m: statistics.median(xs) for m, xs in s.items()} for v, s in samples.items()}
    out: dict = {"median": med, "samples": samples}
    for v in med:
        if v != "plain":
            out[f"{v}/plain"] = {
                m: round(statistics.median(a / b for a, b in zip(xs, samples["plain"][m])), 3)
                for m, xs in samples[v].items()}
            out[f"{v}/plain of medians"] = {m: round(med[v][m] / med["plain"][m], 3) for m in med[v]}
    return out


def one_uplink(ruleset: str, dev: str) -> str:
    """RULESET with the choice of new IPv4 flows narrowed to the uplink on DEV."""
    found = re.search(rf'"{re.escape(dev)}" : goto (mark_[A-Za-z0-9_.-]+)', ruleset)
    if found is None:
        raise SystemExit(f"no uplink on {dev} in the ruleset")
    one = f"numgen inc mod 1 vmap {{ 0 : goto {found.group(1)} }}"
    narrowed, count = re.subn(r"(\tchain choose \{\n).*?(\n\t\})",
                              lambda m: m.group(1) + "\t\t" + one + m.group(2), ruleset, flags=re.S)
    if count != 1:
        raise SystemExit("no chain choose in the ruleset")
    return narrowed


def run_case(case: Case, name: str, workdir: Path, article: Optional[Lab], rounds: int,
             seconds: float) -> dict:
    topo = generate.write(workdir / f"{case_name(case).lower()}.json", 1, *case)
    lab = Lab(name, str(topo))
    lab.down()
    lab.up()
    try:
        converge_s = converge(lab)
        ours = lab.run("r1", ["nft", "list", "ruleset"]).stdout
        main_dev = lab.run("r1", ["ip", "-4", "route", "show", "default"]).stdout.split(" dev ")[1].split()[0]
        routers = {"ours": Router(lab, {"ours": "flush ruleset\n" + ours}),
                   "plain": Router(lab, {"plain": PLAIN}),
                   "ours-1": Router(lab, {"ours-1": "flush ruleset\n" + one_uplink(ours, main_dev)})}
        rules = len([line for line in ours.splitlines() if line.startswith("\t\t") and "type " not in line])
        with ExitStack() as stack:
            stack.enter_context(servers(lab))
            if article is not None and case[:2] == (2, 2):
                routers["article"] = Router(article, {"article": None})
            samples = measure(routers, rounds, seconds)
        return {"case": case_name(case), "uplinks": case[0], "lans": case[1], "prefixes": case[2],
                "ruleset_lines": rules, "converge_s": round(converge_s, 1), **summarise(samples)}
    finally:
        lab.down()


def trends(results: List[dict]) -> List[dict]:
    """How each ours/plain ratio moves from U=2 to U=16 (same L, P), from P=1 to P=64 (same
    U, L), and from the smallest case to the largest."""
    by = {(r["uplinks"], r["lans"], r["prefixes"]): r for r in results}
    pairs = [((2, lans, p), (16, lans, p), f"U2->U16 (L{lans} P{p})") for lans in (2, 8) for p in (1, 64)]
    pairs += [((u, lans, 1), (u, lans, 64), f"P1->P64 (U{u} L{lans})") for u in (2, 8, 16) for lans in (2, 8)]
    pairs.append(((2, 2, 1), (16, 8, 64), "U2-L2-P1->U16-L8-P64"))
    return [{"change": label, **{m: round(by[b]["ours/plain"][m] - by[a]["ours/plain"][m], 3)
                                 for m in ("gbps", "conn_per_s")}}
            for a, b, label in pairs if a in by and b in by]


def table(results: List[dict]) -> str:
    head = (f"{'case':<12} {'ours Gb/s':>9} {'plain':>7} {'ratio':>6}   {'ours conn/s':>11} {'plain':>7} "
            f"{'ratio':>6}   {'ours-1 ratio':>12} {'Gb/s':>6}   {'article conn/s':>14} {'ratio':>6}  "
            f"{'Gb/s':>6}")
    lines = [head, "-" * len(head)]
    for r in results:
        m, q, one = r["median"], r["ours/plain"], r["ours-1/plain"]
        art = r.get("article/plain")
        lines.append(
            f"{r['case']:<12} {m['ours']['gbps']:>9.2f} {m['plain']['gbps']:>7.2f} {q['gbps']:>6.3f}   "
            f"{m['ours']['conn_per_s']:>11.0f} {m['plain']['conn_per_s']:>7.0f} {q['conn_per_s']:>6.3f}   "
            f"{one['conn_per_s']:>12.3f} {one['gbps']:>6.3f}   "
            + (f"{m['article']['conn_per_s']:>14.0f} {art['conn_per_s']:>6.3f}  {art['gbps']:>6.3f}"
               if art else f"{'-':>14} {'-':>6}  {'-':>6}"))
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help=f"only {', '.join(map(case_name, QUICK))}, 2 rounds")
    p.add_argument("--rounds", type=int)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--cases", help="comma-separated subset such as U2-L2-P1,U16-L8-P64")
    p.add_argument("--json", type=Path, help="default: bench/results/dataplane[-quick].json")
    args = p.parse_args()
    args.json = args.json or ROOT / "bench" / "results" / f"dataplane{'-quick' if args.quick else ''}.json"
    cases = QUICK if args.quick else FULL
    if args.cases:
        wanted = args.cases.upper().split(",")
        cases = [c for c in FULL if case_name(c) in wanted]
        if len(cases) != len(wanted):
            p.error(f"--cases {args.cases}: allowed {', '.join(map(case_name, FULL))}")
    rounds = args.rounds or (2 if args.quick else 3)
    name = os.environ.get("MHLAB_NAME", "bench")
    article = Lab(f"{name[:7]}a", "default") if any(c[:2] == (2, 2) for c in cases) else None
    results: List[dict] = []
    with tempfile.TemporaryDirectory(prefix="mhbench-") as tmp, ExitStack() as stack:
        if article is not None:
            article.down()
            article.up()
            stack.callback(article.down)
            install_article(article)
            stack.enter_context(servers(article))
        for case in cases:
            print(f"== {case_name(case)}", file=sys.stderr, flush=True)
            results.append(run_case(case, name, Path(tmp), article, rounds, args.seconds))
    report = {"bench": "dataplane", "rounds": rounds, "seconds": args.seconds, "streams": STREAMS,
              "conn_workers": CONN_WORKERS, "cpus": os.cpu_count(), "loadavg_at_end": os.getloadavg(),
              "when": time.strftime("%Y-%m-%dT%H:%M:%S"), "cases": results, "trends": trends(results)}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(table(results))
    for row in report["trends"]:
        print(f"{row['change']:<24} ratio change: throughput {row['gbps']:+.3f}, "
              f"conn/s {row['conn_per_s']:+.3f}")
    print(f"JSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
