"""Traffic checks of the molecule scenarios, with real sockets in the lab's namespaces."""
import collections
import os
import sys
import time

sys.path.insert(0, "tests")
from harness import Lab

# The same topology as create, or up() would rebuild the lab.
lab = Lab(sys.argv[1], os.environ.get("MH_TOPOLOGY", "default"))
lab.up()
check = sys.argv[2]


def wait(pred, timeout):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if pred():
            return time.monotonic() - start
    return None


def both(router="r1", client=None, family=4, src=None):
    client = client or lab.client_of("lan1", router)
    seen = collections.Counter(lab.flows(client, 20, family=family, src=src))
    expected = {lab.uplink_address("isp1", router, family), lab.uplink_address("isp2", router, family)}
    print(router, family, dict(seen))
    assert set(seen) <= expected and len(seen) == 2 and min(seen.values()) >= 5, seen


# LSM's first verdicts arrive after the hold time.
for r in lab.plan["routers"]:
    wait(lambda r=r: "probe=up" in lab.run(r, ["cat", "/var/lib/netops-multihome/state/isp2"],
                                            check=False).stdout, 10)
if check == "balance":
    both()
elif check == "fleet":
    for router in lab.plan["routers"]:
        both(router)
elif check == "ipv6":
    # Without NAT, a client's IPv6 source picks the ISP that delegated it.
    for isp, k in (("isp1", 1), ("isp2", 2)):
        src = f"2001:db8:{k}01:1::10"
        seen = set(lab.flows("c1", 6, family=6, src=src))
        print(isp, seen)
        assert seen == {src}, seen
    assert lab.spoofed("isp1") == 0 and lab.spoofed("isp2") == 0
elif check == "failover":
    isp1, isp2 = lab.uplink_address("isp1"), lab.uplink_address("isp2")
    with lab.stream("c1", count=6, duration=12.0) as streams:
        time.sleep(1.0)
        lab.cut_upstream("isp1")
        took = wait(lambda: set(lab.flows("c1", 4, timeout=0.4)) == {isp2}, 6.0)
        assert took is not None, "new flows did not move to isp2"
        lab.restore_upstream("isp1")
        back = wait(lambda: isp1 in lab.flows("c1", 4, timeout=0.4), 10.0)
        assert back is not None, "isp1 did not come back"
    stalled = [s for s in streams.reports
               if s["sources"] == [isp2] and (s.get("error") or s["max_gap"] >= 1.0)]
    assert not stalled, stalled
    print(f"failover {took:.2f}s failback {back:.2f}s")
    last_event = ["tail", "-n", "1", "/var/log/netops-multihome/events.log"]
    wait(lambda: "state=up" in lab.run("r1", last_event).stdout, 5)
else:
    raise SystemExit(f"unknown check {check}")
