"""The failover scenario: isp1's upstream is cut and restored under live streams."""
from __future__ import annotations

import time

from harness import wait_for


def test_upstream_cut_moves_new_flows_to_isp2_within_6s_back_within_10s_isp2_streams_never_stall(lab) -> None:
    isp1, isp2 = lab.uplink_address("isp1"), lab.uplink_address("isp2")
    with lab.stream("c1", count=6, duration=12.0) as streams:
        time.sleep(1.0)
        lab.cut_upstream("isp1")
        took = wait_for(lambda: set(lab.flows("c1", 4, timeout=0.4)) == {isp2}, 6.0)
        assert took is not None, "new flows did not move to isp2 within 6 s"
        lab.restore_upstream("isp1")
        back = wait_for(lambda: isp1 in lab.flows("c1", 4, timeout=0.4), 10.0)
        assert back is not None, "isp1 took no new flow within 10 s of the restore"
    on_isp2 = [s for s in streams.reports if s["sources"] == [isp2]]
    assert on_isp2, streams.reports
    stalled = [s for s in on_isp2 if s.get("error") or s["max_gap"] >= 1.0]
    assert not stalled, stalled
    last_event = ["tail", "-n", "1", "/var/log/netops-multihome/events.log"]
    assert wait_for(lambda: "state=up" in lab.run("r1", last_event).stdout, 5) is not None
    print(f"failover {took:.2f}s failback {back:.2f}s")
