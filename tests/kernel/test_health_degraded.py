"""Degraded uplinks on the lab (real LSM): isp2 has ``degraded_when: {loss_pct: 10, rtt_ms: 100}``,
judged by a second, stricter LSM connection per target. Loss is injected at the ISP (nft
``numgen random`` drops, both ways); delay by a userspace echo responder in the internet
node that answers isp2's probes 200 ms late (``lab/echo_delay.py``; `tc netem` does not work
here), below the 250 ms after which the ``fast`` profile counts a probe as lost."""
from __future__ import annotations

import json
import time

import pytest
from harness import Lab, wait_for
from harness.health import converge, echo_delay, event_log, healthy, states
from prometheus_client.parser import text_string_to_metric_families

ISP1, ISP2 = "198.51.100.2", "198.51.100.6"
HOLD_S = 2.5  # fast profile: 50 answered probes 50 ms apart


def changes(lines: list, uplink: str, source: str) -> list:
    """The effective changes SOURCE made to UPLINK: 'up->down', 'down->up', ..."""
    return [x.split("effective=", 1)[1].split()[0] for x in lines
            if f"uplink={uplink} source={source} " in x and "effective=" in x
            and "effective=up->up" not in x and "effective=down->down" not in x]


def marked_flows(lab: Lab, uplink: str) -> int:
    mark = json.loads(lab.run("r1", ["cat", "/etc/netops-multihome/model.json"]).stdout)[
        "failover"]["uplinks"][uplink]["mark"]
    out = lab.run("r1", ["conntrack", "-L", "--mark", f"{mark}/0xff00"], check=False).stdout
    return len(out.splitlines())


def metric_states(lab: Lab, uplink: str) -> set:
    """The states multihome_uplink_state shows for UPLINK in the metrics textfile."""
    text = lab.run("r1", ["cat", "/var/lib/prometheus/node-exporter/multihome.prom"]).stdout
    return {s.labels["state"] for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == "multihome_uplink_state" and s.labels["uplink"] == uplink and s.value == 1}


@pytest.fixture(scope="module")
def router(lab: Lab) -> Lab:
    done = converge(lab, {"isp2": {"degraded_when": {"loss_pct": 10, "rtt_ms": 100}}})
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    conf = lab.run("r1", ["cat", "/etc/netops-multihome/lsm.conf"]).stdout
    assert "name=isp2.1.degraded" in conf and "name=isp2.2.degraded" in conf and "isp1.1.degraded" not in conf
    healthy(lab)
    return lab


def test_loss_above_threshold_leaves_rotation_keeps_flows_and_returns_after_the_hold(router: Lab) -> None:
    before = len(event_log(router))
    with router.stream("c1", count=4, duration=60) as streams:
        time.sleep(1.0)
        on_isp2 = marked_flows(router, "isp2")
        router.isp_drop("isp2", 20, syn_only=False)
        took = wait_for(lambda: states(router)["isp2"] == ("down", "degraded"), 15)
        assert took is not None, states(router)
        assert set(router.flows("c1", 6, timeout=2.0)) == {ISP1}
        assert marked_flows(router, "isp2") >= on_isp2 > 0
        time.sleep(10.0)  # under loss it stays out: no flapping
        assert states(router)["isp2"] == ("down", "degraded")
        assert metric_states(router, "isp2") == {"degraded"}
        router.isp_clear_faults("isp2")
        cleared = time.monotonic()
        assert wait_for(lambda: states(router)["isp2"] == ("up", "ok"), 20) is not None
        back = time.monotonic() - cleared
        streams.end_early()
    kept = [s for s in streams.reports if s["sources"] == [ISP2]]
    assert kept and all(not s.get("error") for s in kept), streams.reports
    lines = event_log(router)[before:]
    assert changes(lines, "isp2", "degraded") == ["up->down", "down->up"], lines
    assert not changes(lines, "isp2", "probe"), lines  # 36% probe loss is no outage
    assert back >= HOLD_S, back
    print(f"20% loss both ways -> degraded after {took:.2f}s; cleared -> back after {back:.2f}s; "
          f"{len(kept)} streams kept on isp2")
    assert ISP2 in router.flows("c1", 4, timeout=1.0)


def test_replies_slower_than_rtt_ms_leave_rotation_until_fast_again(router: Lab) -> None:
    healthy(router)
    with echo_delay(router, [ISP2], 200) as echo:
        time.sleep(3.0)  # the responder answers in place of the kernel: nothing changes
        assert states(router) == {"isp1": ("up", "ok"), "isp2": ("up", "ok")}
        before = len(event_log(router))
        echo.slow()
        # LSM times slow probes out about one per second (docs/resilience.md): 13-28 s measured
        took = wait_for(lambda: states(router)["isp2"] == ("down", "degraded"), 60)
        assert took is not None, (states(router), event_log(router)[before:])
        assert set(router.flows("c1", 6, timeout=2.0)) == {ISP1}
        time.sleep(5.0)
        assert states(router)["isp2"] == ("down", "degraded")
        echo.fast()
        fast = time.monotonic()
        assert wait_for(lambda: states(router)["isp2"] == ("up", "ok"), 20) is not None
        back = time.monotonic() - fast
    lines = event_log(router)[before:]
    assert changes(lines, "isp2", "degraded") == ["up->down", "down->up"], lines
    assert not changes(lines, "isp2", "probe"), lines  # 200 ms is slow, not lost
    print(f"replies 200 ms late (rtt_ms 100) -> degraded after {took:.2f}s; "
          f"fast again -> back after {back:.2f}s")
    assert ISP2 in router.flows("c1", 4, timeout=1.0)
