"""K-of-N target quorum on the lab (real LSM, one connection per target): isp1 probes three
targets and is down when two of them are (``monitor.down_targets: 2``); isp2 probes the same
three with the default (down only when all three are). A target is made unreachable through
one ISP only, by dropping its echo requests at that ISP."""
from __future__ import annotations

import time

import pytest
from harness import Lab, wait_for
from harness.health import block_target, converge, event_log, healthy, states

ISP1, ISP2 = "198.51.100.2", "198.51.100.6"
TARGETS = ["203.0.113.10", "203.0.113.11", "203.0.113.12"]
# LSM of the fast profile decides within 0.75-1.75 s, the hook in well under 0.5 s.
VERDICT_S = 3.0


@pytest.fixture(scope="module")
def router(lab: Lab) -> Lab:
    done = converge(lab, {"isp1": {"targets": TARGETS, "monitor": {"down_targets": 2}},
                          "isp2": {"targets": TARGETS}})
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    conf = lab.run("r1", ["cat", "/etc/netops-multihome/lsm.conf"]).stdout
    assert "group {" not in conf and conf.count("eventscript=/") == 6, conf
    healthy(lab)
    return lab


def test_one_of_three_targets_lost_keeps_the_uplink_up_with_down_targets_2(router: Lab) -> None:
    before = len(event_log(router))
    block_target(router, "isp1", TARGETS[2])
    assert wait_for(lambda: any("uplink=isp1 source=probe state=up" in x and "target=3:down targets_down=1/3"
                                in x for x in event_log(router)[before:]), 10), event_log(router)[before:]
    time.sleep(VERDICT_S)
    assert states(router)["isp1"] == ("up", "ok")
    assert ISP1 in router.flows("c1", 4, timeout=1.0)
    healthy(router)


def test_two_of_three_targets_lost_take_the_uplink_down_with_down_targets_2(router: Lab) -> None:
    block_target(router, "isp1", TARGETS[2])
    block_target(router, "isp1", TARGETS[0])
    took = wait_for(lambda: states(router)["isp1"] == ("down", "probe"), 10)
    assert took is not None and took < VERDICT_S + 1, took
    assert set(router.flows("c1", 6, timeout=1.0)) == {ISP2}
    down = [x for x in event_log(router) if "uplink=isp1 source=probe state=down effective=up->down" in x]
    assert down and "targets_down=2/3 down_at=2" in down[-1], down
    print(f"two of three targets lost -> isp1 down after {took:.2f}s")
    healthy(router)
    assert ISP1 in router.flows("c1", 4, timeout=1.0)


def test_default_quorum_keeps_the_uplink_up_until_every_target_is_lost(router: Lab) -> None:
    block_target(router, "isp2", TARGETS[0])
    block_target(router, "isp2", TARGETS[1])
    assert wait_for(lambda: any("uplink=isp2 source=probe state=up" in x and "targets_down=2/3 down_at=3" in x
                                for x in event_log(router)), 10), event_log(router)[-6:]
    time.sleep(VERDICT_S)
    assert states(router)["isp2"] == ("up", "ok")
    block_target(router, "isp2", TARGETS[2])
    assert wait_for(lambda: states(router)["isp2"] == ("down", "probe"), VERDICT_S + 1) is not None
    assert set(router.flows("c1", 4, timeout=1.0)) == {ISP1}
    healthy(router)


@pytest.mark.parametrize("changes, variable, allowed", [
    ({"isp1": {"targets": TARGETS, "monitor": {"down_targets": 4}}},
     "multihome_uplinks[0].monitor.down_targets", "an integer from 1 to 3"),
    ({"isp2": {"degraded_when": {"loss_pct": 100}}},
     "multihome_uplinks[1].degraded_when.loss_pct", "an integer from 1 to 79"),
    ({"isp2": {"degraded_when": {"rtt_ms": 400}}},
     "multihome_uplinks[1].degraded_when.rtt_ms", "an integer from 1 to 249"),
])
def test_bad_quorum_or_threshold_fails_naming_it_before_the_router_changes(router: Lab, changes, variable,
                                                                          allowed) -> None:
    before = router.snapshot()
    bad = converge(router, changes)
    assert bad.returncode != 0
    assert variable in bad.stdout and allowed in bad.stdout, bad.stdout[-3000:]
    assert router.snapshot() == before
