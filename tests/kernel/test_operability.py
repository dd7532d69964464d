"""Operability on the lab's router r1 (issue 15): the versioned ``status --json`` schema read
field by field, the human table and ``--watch``, and ``multihome drain``/``undrain``
under live streams."""
from __future__ import annotations

import collections
import json
import time
from pathlib import Path

import pytest
from harness import wait_for

ROOT = Path(__file__).resolve().parents[2]
ISP1, ISP2 = "198.51.100.2", "198.51.100.6"
STATE = "/var/lib/netops-multihome/state"


def status(lab) -> dict:
    return json.loads(lab.run("r1", ["multihome", "status", "--json"]).stdout)


def uplink(lab, name: str) -> dict:
    return next(u for u in status(lab)["uplinks"] if u["name"] == name)


@pytest.fixture(scope="module")
def converged(lab):
    done = lab.playbook()
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert wait_for(lambda: "probe=up" in lab.run("r1", ["cat", f"{STATE}/isp2"], check=False).stdout, 10)
    return lab


def test_status_json_schema_v1_every_field_has_its_documented_type_and_value(converged) -> None:
    lab = converged
    with lab.stream("c1", count=4, duration=4.0):
        time.sleep(0.5)
        data = status(lab)
    assert set(data) == {"schema_version", "backend", "mode", "failover", "ruleset_in_sync", "uplinks"}
    assert data["schema_version"] == 1
    assert (data["backend"], data["mode"], data["failover"], data["ruleset_in_sync"]) == (
        "nftables", "round_robin", True, True)
    fields = {"name", "interface", "state", "reason", "drained", "since", "detail", "weight", "tier",
              "mark", "table", "flows", "last_event"}
    for up, (name, iface) in zip(data["uplinks"], (("isp1", "wan1"), ("isp2", "wan2")), strict=True):
        assert set(up) == fields, up
        assert (up["name"], up["interface"], up["state"], up["reason"], up["drained"]) == (
            name, iface, "up", "ok", False)
        assert isinstance(up["since"], float) and time.time() - 3600 < up["since"] <= time.time()
        assert "probe=up" in up["detail"] and "carrier=up" in up["detail"]
        assert (up["weight"], up["tier"]) == (1, 1)
        rules = lab.run("r1", ["ip", "rule", "show", "table", str(up["table"])]).stdout
        assert f"fwmark {up['mark']}/0xff00" in rules
        assert up["flows"] >= 2 and f"uplink={name} " in up["last_event"]


def test_status_table_has_a_reason_column_and_watch_redraws_in_place(converged) -> None:
    lab = converged
    table = lab.run("r1", ["multihome", "status"]).stdout.splitlines()
    assert table[2].split()[:8] == ["UPLINK", "IFACE", "STATE", "REASON", "SINCE", "WEIGHT", "TIER", "FLOWS"]
    assert table[3].split()[:4] == ["isp1", "wan1", "up", "ok"]
    watch = lab.run("r1", ["timeout", "-s", "INT", "1.5", "multihome", "status", "--watch",
                           "--interval", "0.3"], check=False).stdout
    frames = watch.split("\x1b[H\x1b[2J")[1:]
    assert len(frames) >= 3 and all("isp2" in f for f in frames), watch


def test_drained_uplink_keeps_its_streams_gets_no_new_flows_survives_apply_and_undrain_restores(
        converged) -> None:
    lab = converged
    try:
        with lab.stream("c1", count=6, duration=900.0) as streams:
            time.sleep(1.0)
            lab.run("r1", ["multihome", "drain", "isp1"])
            drained = uplink(lab, "isp1")
            assert (drained["state"], drained["reason"], drained["drained"]) == (
                "down", "admin-drained", True)
            assert drained["flows"] >= 3, drained  # its established streams were not deleted
            assert set(lab.flows("c1", 6)) == {ISP2}
            # what a reboot replays (multihome boot applies the recorded states)
            assert "admin=down" in lab.run("r1", ["cat", f"{STATE}/isp1"]).stdout
            lab.run("r1", ["multihome", "apply"])
            assert set(lab.flows("c1", 4)) == {ISP2}
            time.sleep(1.0)
            streams.end_early()
        # streams opened before the drain stayed on their uplink without a stall
        assert {tuple(r["sources"]) for r in streams.reports} == {(ISP1,), (ISP2,)}
        assert [r for r in streams.reports if r.get("error") or r["max_gap"] >= 1.0] == []
    finally:
        lab.run("r1", ["multihome", "undrain", "isp1"])
    assert uplink(lab, "isp1")["reason"] == "ok"
    assert collections.Counter(lab.flows("c1", 4)) == {ISP1: 2, ISP2: 2}


def test_draining_an_unknown_uplink_is_refused_naming_the_allowed_ones(converged) -> None:
    proc = converged.run("r1", ["multihome", "drain", "isp9"], check=False)
    assert proc.returncode == 1 and "isp9" in proc.stderr and "isp1, isp2" in proc.stderr, proc.stderr
