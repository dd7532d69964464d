"""An HA pair (topology ha_pair): r1 and r2 share the LAN and both ISPs' segments, keepalived
moves the LAN gateway and the uplinks' NAT addresses, conntrackd keeps the backup's copy
of every flow. Established LAN streams on both uplinks must survive the master's death
without a reset, keep their virtual source address and their uplink (ct mark).

One lab and one converge for the module; the tests run in order and hand the pair on in a
known state (each names the master it expects).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from harness import Lab, ha, recovery_time, wait_for

LAB_TOPOLOGY = "ha_pair"
VIP1, VIP2 = "198.51.100.2", "198.51.100.10"
MAX_STALL = 3.0  # the bound for an established flow across a takeover
NEW_FLOWS_WITHIN = 2.0


def _status(lab: Lab, router: str) -> dict:
    return json.loads(lab.run(router, ["multihome", "status", "--json"]).stdout)


def _uplink_states(lab: Lab, router: str) -> dict:
    return {u["name"]: u["state"] for u in _status(lab, router)["uplinks"]}


def _both_see(lab: Lab, uplink: str, state: str) -> bool:
    return all(_uplink_states(lab, r)[uplink] == state for r in ha.ROUTERS)


def _state_untouched(lab: Lab) -> bool:
    return all(
        lab.run(r, ["test", "-e", path], check=False).returncode != 0
        for r in ha.ROUTERS
        for path in ("/etc/netops-multihome/model.json", "/etc/keepalived/keepalived.conf")
    )


def _with_vars(lab: Lab, old: str, new: str, routers=("r2",)):
    """Run site.yml with OLD replaced by NEW in ROUTERS' host_vars (restored afterwards)."""
    paths = [Path(lab.inventory) / "host_vars" / f"{r}.yml" for r in routers]
    originals = [p.read_text() for p in paths]
    for path, text in zip(paths, originals):
        assert old in text
        path.write_text(text.replace(old, new))
    try:
        return lab.playbook()
    finally:
        for path, text in zip(paths, originals):
            path.write_text(text)


def test_pair_with_different_marks_fails_naming_both_routers_before_either_changes(lab: Lab) -> None:
    run = _with_vars(lab, "    interface: wan1\n", "    interface: wan1\n    mark: 0x7700\n")
    assert run.returncode != 0
    assert "multihome_uplinks (isp1).mark" in run.stdout, run.stdout[-3000:]
    assert "'r1': 42240" in run.stdout and "'r2': 30464" in run.stdout, run.stdout[-3000:]
    assert _state_untouched(lab)


def test_router_whose_peer_has_no_ha_settings_fails_before_either_changes(lab: Lab) -> None:
    run = _with_vars(lab, "multihome_ha:\n", "multihome_ha_unused:\n")
    assert run.returncode != 0
    assert "multihome_ha.peer" in run.stdout and "r2 has none" in run.stdout, run.stdout[-3000:]
    assert _state_untouched(lab)


@pytest.fixture(scope="module")
def pair(lab: Lab) -> Lab:
    first = lab.playbook()
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    assert wait_for(lambda: ha.master(lab) is not None, 10) is not None, ha.roles(lab)
    if ha.master(lab) != "r1":  # both started at once; make the higher priority master
        ha.cut_router(lab, "r2")
        assert ha.wait_master(lab, "r1", 10) is not None
        ha.cut_router(lab, "r2", up=True)
    assert wait_for(lambda: ha.roles(lab) == {"r1": "MASTER", "r2": "BACKUP"}, 10) is not None
    return lab


def test_status_shows_role_peer_and_sync_health_and_both_monitor_their_uplinks(pair: Lab) -> None:
    r1, r2 = _status(pair, "r1")["ha"], _status(pair, "r2")["ha"]
    assert (r1["role"], r1["peer"], r1["sync"]) == ("master", "r2", "ok"), r1
    assert (r2["role"], r2["peer"], r2["sync"]) == ("backup", "r1", "ok"), r2
    assert r1["sync_packets"]["received"] > 0 and r2["sync_packets"]["received"] > 0
    # The backup's LSM probes leave from its own addresses and get answers.
    for router in ha.ROUTERS:
        assert wait_for(lambda r=router: set(_uplink_states(pair, r).values()) == {"up"}, 10) is not None


def _takeover(lab: Lab, old: str, fault) -> dict:
    """Streams on both uplinks and new-flow probes across FAULT (old master -> peer)."""
    new = ha.other(old)
    with lab.probing("c1", 9) as probe, lab.stream("c1", count=4, duration=8) as streams:
        time.sleep(1.5)  # the backup has received every stream's state by now
        before = ha.marks(lab, old, 5001)
        synced = ha.external_cache(lab, new)
        event = time.monotonic()
        fault(lab, old)
        took = ha.wait_master(lab, new, 10)
        after = ha.marks(lab, new, 5001)
    return {"streams": streams.reports, "before": before, "after": after, "took": took,
            "synced": synced, "recovery": recovery_time(probe.flows, event), "new": new}


def _assert_flows_survived(result: dict) -> None:
    assert result["took"] is not None, "the backup never took over"
    ports = [r["local_port"] for r in result["streams"]]
    for r in result["streams"]:
        assert r["error"] is None, r  # no reset, no broken flow
        assert r["max_gap"] <= MAX_STALL, r
        assert len(r["sources"]) == 1 and r["sources"][0] in (VIP1, VIP2), r  # same NAT address
    assert {r["sources"][0] for r in result["streams"]} == {VIP1, VIP2}, "streams on every uplink"
    for port in ports:
        assert f"sport={port} " in result["synced"], f"stream {port} not in the backup's cache"
        assert result["after"][port] == result["before"][port], (port, result)  # same uplink
    assert result["recovery"] is not None and result["recovery"] <= NEW_FLOWS_WITHIN, result["recovery"]


def test_master_losing_all_links_hands_established_flows_to_the_backup(pair: Lab) -> None:
    result = _takeover(pair, "r1", ha.cut_router)
    _assert_flows_survived(result)
    assert ha.ha_role(pair, "r1") == "FAULT"
    assert set(pair.flows("c1", 4)) == {VIP1, VIP2}


def test_returning_old_master_does_not_preempt_and_flows_stay_undisturbed(pair: Lab) -> None:
    assert ha.master(pair) == "r2"
    with pair.stream("c1", count=4, duration=6) as streams:
        time.sleep(1)
        ha.cut_router(pair, "r1", up=True)
        assert wait_for(lambda: ha.ha_role(pair, "r1") == "BACKUP", 5) is not None
        time.sleep(2)  # several advert intervals: a preempting r1 (priority 250 > 150) would be master
        assert ha.master(pair) == "r2"
    for r in streams.reports:
        assert r["error"] is None and r["max_gap"] < 1.0, r


def test_master_whose_daemons_are_killed_hands_established_flows_to_the_backup(pair: Lab) -> None:
    result = _takeover(pair, "r2", ha.kill_daemons)
    _assert_flows_survived(result)
    ha.start_daemons(pair, "r2")  # keepalived drops the stale virtual addresses as backup
    assert wait_for(lambda: ha.roles(pair) == {"r1": "MASTER", "r2": "BACKUP"}
                    and not ha.owns_virtual_addresses(pair, "r2"), 10) is not None


def test_cut_sync_link_keeps_roles_and_the_masters_flows(pair: Lab) -> None:
    """Split of the sync link alone: VRRP still sees its peer on the LAN and ISP segments,
    so nobody takes over; only state sync pauses (documented in docs/ha.md)."""
    assert ha.master(pair) == "r1"
    try:
        with pair.stream("c1", count=4, duration=5) as streams:
            time.sleep(1)
            ha.cut_sync(pair)
            time.sleep(3)
            assert ha.roles(pair) == {"r1": "MASTER", "r2": "BACKUP"}
            assert not ha.owns_virtual_addresses(pair, "r2")
            assert _status(pair, "r1")["ha"]["sync"] == "link down"
        for r in streams.reports:
            assert r["error"] is None and r["max_gap"] < 1.0, r
    finally:
        ha.cut_sync(pair, up=True)
    assert set(pair.flows("c1", 4)) == {VIP1, VIP2}


def test_takeover_while_an_uplink_is_down_keeps_it_out_of_rotation(pair: Lab) -> None:
    assert ha.master(pair) == "r1"
    # Both monitors settled (a router that just came back holds its uplinks down a while).
    settled = wait_for(lambda: _both_see(pair, "isp1", "up") and _both_see(pair, "isp2", "up"), 20)
    assert settled is not None, [_status(pair, r) for r in ha.ROUTERS]
    pair.cut_upstream("isp2")
    try:
        # Both routers see it: the backup's failover state is current before it takes over.
        assert wait_for(lambda: _both_see(pair, "isp2", "down"), 10) is not None, [
            _status(pair, r) for r in ha.ROUTERS]
        ha.cut_router(pair, "r1")
        assert ha.wait_master(pair, "r2", 10) is not None
        assert wait_for(lambda: pair.flows("c1", 1, timeout=0.5) == [VIP1], NEW_FLOWS_WITHIN) is not None
        assert set(pair.flows("c1", 6)) == {VIP1}
    finally:
        pair.restore_upstream("isp2")
        ha.cut_router(pair, "r1", up=True)
    assert wait_for(lambda: ha.roles(pair) == {"r1": "BACKUP", "r2": "MASTER"}, 10) is not None


def test_with_preemption_the_returning_router_takes_back_as_harmlessly(pair: Lab) -> None:
    run = _with_vars(pair, "multihome_ha:\n", "multihome_ha:\n  preempt: true\n", ha.ROUTERS)
    assert run.returncode == 0, run.stdout[-3000:]
    assert ha.wait_master(pair, "r1", 20) is not None  # priority 250 takes over after preempt_delay
    with pair.stream("c1", count=4, duration=14) as streams:
        time.sleep(1.5)
        before = ha.marks(pair, "r1", 5001)
        ha.cut_router(pair, "r1")
        assert ha.wait_master(pair, "r2", 10) is not None
        ha.cut_router(pair, "r1", up=True)
        assert wait_for(lambda: ha.ha_role(pair, "r1") == "BACKUP", 5) is not None
        assert ha.wait_master(pair, "r1", 15) is not None  # the move back
        after = ha.marks(pair, "r1", 5001)
    for r in streams.reports:
        assert r["error"] is None and r["max_gap"] <= MAX_STALL and len(r["sources"]) == 1, r
        assert after[r["local_port"]] == before[r["local_port"]], (r, before, after)
    assert {r["sources"][0] for r in streams.reports} == {VIP1, VIP2}
    assert ha.roles(pair) == {"r1": "MASTER", "r2": "BACKUP"}
    assert set(pair.flows("c1", 4)) == {VIP1, VIP2}
