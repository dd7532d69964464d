#!/usr/bin/env python3
"""Reference figure: the article's failover wiring on the same lab, measured the same way.

    python3 bench/article_reference.py [--runs 3]

Wires the lab's plain router r1 the way the article does (written from its description,
IPv4 only): LSM with its package defaults (1 s probes, down after 7 lost in a row, up
after 10 answered), one connection per ISP bound to its uplink, and an event script that
records the ISP's state and re-runs a rebuild script which flushes every iptables table
and every ISP routing table and builds them again for the ISPs that are up (`statistic
nth` marks, CONNMARK, SNAT, fwmark rules). Then cuts isp1's upstream RUNS times and
reports, like bench/failover.py, the time until new LAN flows all succeed again, and how
long after the restore LSM declares isp1 up again. About 2.5 minutes per run.
Builds its own lab (name `artref`); prints JSON and a one-line table.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from harness import Lab, recovery_time  # noqa: E402

# The article's approach as a shell script: flush everything, rebuild for the live ISPs.
REBUILD = r"""#!/bin/bash
isps=(ISP1 ISP2); declare -A iface=([ISP1]=wan1 [ISP2]=wan2) gw=([ISP1]=198.51.100.1 [ISP2]=198.51.100.5)
declare -A src=([ISP1]=198.51.100.2 [ISP2]=198.51.100.6) mark=([ISP1]=1 [ISP2]=2) state
up=0
for i in "${isps[@]}"; do
  state[$i]=up; [ -f "/run/${i}_state" ] && state[$i]=$(< "/run/${i}_state")
  [ "${state[$i]}" = up ] && up=$((up+1))
done
sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0
iptables -F; iptables -t nat -F; iptables -t mangle -F
for i in "${isps[@]}"; do iptables -t mangle -X "MARK-$i" 2>/dev/null; done
for lan in lan1 lan2; do
  iptables -t mangle -A PREROUTING -i $lan -d 192.168.0.0/16 -j ACCEPT
  iptables -t mangle -A PREROUTING -i $lan -m conntrack --ctstate ESTABLISHED,RELATED \
    -j CONNMARK --restore-mark
done
n=0
for i in "${isps[@]}"; do
  [ "${state[$i]}" = up ] || continue
  iptables -t nat -A POSTROUTING -o "${iface[$i]}" -j SNAT --to-source "${src[$i]}"
  iptables -t mangle -N "MARK-$i"
  iptables -t mangle -A "MARK-$i" -j MARK --set-mark "${mark[$i]}"
  iptables -t mangle -A "MARK-$i" -j CONNMARK --save-mark
  for lan in lan1 lan2; do
    iptables -t mangle -A PREROUTING -i $lan -m conntrack --ctstate NEW -m statistic --mode nth \
      --every $up --packet $n -j "MARK-$i"
  done
  n=$((n+1))
done
for i in "${isps[@]}"; do
  ip route flush table "$i"
  ip rule del fwmark "${mark[$i]}" 2>/dev/null
  [ "${state[$i]}" = up ] || continue
  ip route add table "$i" default via "${gw[$i]}" dev "${iface[$i]}"
  for dev in wan1 wan2 lan1 lan2; do
    ip route show dev $dev scope link | while read -r net rest; do
      ip route add table "$i" "$net" dev $dev
    done
  done
  ip rule add fwmark "${mark[$i]}" table "$i"
done
ip route flush cache
"""

EVENT = """#!/bin/sh
echo "$1" > "/run/$2_state"
exec /usr/local/sbin/article-rebuild
"""

LSM_CONF = """defaults {
  name=defaults
  checkip=127.0.0.1
  eventscript=
  notifyscript=
  warn_email=
  max_packet_loss=15
  max_successive_pkts_lost=7
  min_packet_loss=5
  min_successive_pkts_rcvd=10
  interval_ms=1000
  timeout_ms=1000
  check_arp=0
  ttl=0
}
"""
CONNECTION = """
connection {{
  name={name}
  checkip={target}
  device={dev}
  sourceip={src}
  eventscript=/usr/local/sbin/article-event
}}
"""


CONNECTIONS = (CONNECTION.format(name="ISP1", dev="wan1", src="198.51.100.2", target="203.0.113.10")
               + CONNECTION.format(name="ISP2", dev="wan2", src="198.51.100.6", target="203.0.113.11"))


def install(lab: Lab) -> None:
    files = {
        "/etc/iproute2/rt_tables.d/article.conf": ("101 ISP1\n102 ISP2\n", "644"),
        "/usr/local/sbin/article-rebuild": (REBUILD, "755"),
        "/usr/local/sbin/article-event": (EVENT, "755"),
        "/etc/article-lsm.conf": (LSM_CONF + CONNECTIONS, "600"),
    }
    for path, (text, mode) in files.items():
        lab.run("r1", ["sh", "-c", f'mkdir -p "$(dirname {path})" && cat > {path} && chmod {mode} {path}'],
                stdin=text)
    # The article leaves the monitor's own routing open; the usual way is a host route per
    # target through its ISP (main's default already leads to isp1's target).
    lab.run("r1", ["ip", "route", "replace", "203.0.113.11/32", "via", "198.51.100.5", "dev", "wan2"])
    lab.run("r1", ["/usr/local/sbin/article-rebuild"])


def isp1_state(lab: Lab) -> str:
    return lab.run("r1", ["cat", "/run/ISP1_state"], check=False).stdout.strip() or "up"


def wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"the article's wiring did not settle: {what} within {timeout} s")
        time.sleep(0.2)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    jitter = random.Random(7)
    lab = Lab(os.environ.get("MHLAB_NAME", "artref"), "default").up()
    lsm = None
    samples: list = []
    back: list = []
    try:
        install(lab)
        lsm = lab.popen("r1", ["lsm", "--no-fork", "--config", "/etc/article-lsm.conf",
                               "--pidfile", "/run/article-lsm.pid"])
        time.sleep(15)  # LSM's first verdicts
        for _ in range(args.runs):
            with lab.probing("c1", duration=22) as probe:
                time.sleep(1 + jitter.random())
                event = time.monotonic()
                lab.cut_upstream("isp1")
                wait(lambda: isp1_state(lab) == "down", 30, "ISP1 down")
                time.sleep(5)
            restored = time.monotonic()
            lab.restore_upstream("isp1")
            # LSM's package defaults want at most 5 of the last 100 probes lost before
            # "up": after an outage that is about 100 s at one probe a second.
            wait(lambda: isp1_state(lab) == "up", 200, "ISP1 up")
            back.append(time.monotonic() - restored)
            samples.append(recovery_time(probe.flows, event) or float("inf"))
    finally:
        if lsm is not None:
            lsm.kill()
            lsm.wait()
        lab.down()
    result = {"wiring": "LSM package defaults + flush-and-rebuild script",
              "upstream": {"median_s": statistics.median(samples), "samples_s": samples},
              "isp1_declared_up_after_restore": {"median_s": statistics.median(back), "samples_s": back}}
    print(json.dumps(result, indent=2))
    print(f"article upstream: median {result['upstream']['median_s']:.2f} s; ISP1 up again after "
          f"{result['isp1_declared_up_after_restore']['median_s']:.1f} s ({len(samples)} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
