#!/usr/bin/env bash
# `make demo`: the lab's router r1 becomes a multihomed router with failover.
# Lab up, site.yml, `multihome status`, a burst of flows showing the ISP each took,
# isp1's upstream cut with the failover timed, then the recovery.
set -euo pipefail
cd "$(dirname "$0")/.."
NAME="${MHLAB_NAME:-mh}"
PY="${PYTHON:-python3}"
export ANSIBLE_COLLECTIONS_PATH="${ANSIBLE_COLLECTIONS_PATH:-$PWD/.build/collections}"
PLAYBOOK="${ANSIBLE_PLAYBOOK:-ansible-playbook}"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "lab up ($NAME)"
"$PY" lab/mhlab.py up --name "$NAME"

step "site.yml"
"$PLAYBOOK" -i "/tmp/mhlab-$NAME/inventory" playbooks/site.yml

rc=0
"$PY" - "$NAME" <<'PYEOF' || rc=$?
import collections
import sys

sys.path.insert(0, "tests")
from harness import Lab, wait_for  # noqa: E402

lab = Lab(sys.argv[1])
lab.up()
isp = {lab.uplink_address("isp1"): "isp1", lab.uplink_address("isp2"): "isp2"}


def step(text):
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def burst(n=12, show=True):
    seen = [isp.get(s, s) for s in lab.flows("c1", n, timeout=0.5)]
    if show:
        print("  " + " ".join(seen))
        print("  " + ", ".join(f"{k}: {v}" for k, v in sorted(collections.Counter(seen).items())))
    return seen


step("waiting for LSM's first verdicts")
wait_for(lambda: "probe=up" in lab.run("r1", ["cat", "/var/lib/netops-multihome/state/isp2"], check=False).stdout, 10)
step("multihome status")
print(lab.run("r1", ["multihome", "status"]).stdout)
step("12 new flows from c1: the ISP each took")
burst()
step("cutting isp1's upstream (the link to r1 stays up)")
lab.cut_upstream("isp1")
took = wait_for(lambda: set(burst(4, show=False)) == {"isp2"}, 15)
burst()
print(f"  new flows all via isp2 {took:.2f} s after the cut" if took else "  failover did not happen!")
print(lab.run("r1", ["multihome", "status"]).stdout)
step("restoring isp1's upstream")
lab.restore_upstream("isp1")
back = wait_for(lambda: "isp1" in burst(4, show=False), 20)
burst()
print(f"  isp1 back in rotation {back:.2f} s after the restore" if back else "  isp1 did not come back!")
step("hook events")
print(lab.run("r1", ["tail", "-n", "4", "/var/log/netops-multihome/events.log"]).stdout)
sys.exit(0 if took and back else 1)
PYEOF

step "the lab is still running"
env=""
[ "$NAME" = mh ] || env="MHLAB_NAME=$NAME "
echo "  look around:  ${env}$PY lab/mhlab.py exec r1 -- multihome status"
echo "                ${env}$PY lab/mhlab.py exec r1 -- nft list ruleset"
echo "  tear down:    ${env}make lab-down"
exit $rc
