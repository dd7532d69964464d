"""Parsing the kernel's link events (`ip -o monitor link`) for carrier changes."""
from __future__ import annotations

from engine.model.profiles import monitor_settings

from router.kernel_events import parse_link_line


def test_carrier_lost_gained_and_deleted() -> None:
    lost = "3: wan1@if7: <NO-CARRIER,BROADCAST,MULTICAST,UP,M-DOWN> mtu 1500 state LOWERLAYERDOWN"
    up = "3: wan1@if7: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP"
    admin_down = "3: wan1: <BROADCAST,MULTICAST> mtu 1500 state DOWN"
    deleted = "Deleted 3: wan1@NONE: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500"
    assert parse_link_line(lost) == ("wan1", False)
    assert parse_link_line(up) == ("wan1", True)
    assert parse_link_line(admin_down) == ("wan1", False)
    assert parse_link_line(deleted) == ("wan1", False)
    assert parse_link_line("    link/ether 36:90:0a:68:f3:97 brd ff:ff:ff:ff:ff:ff") is None


def test_profiles_hold_bounds_recovery() -> None:
    fast = monitor_settings("fast", {}, "x")["lsm"]
    assert fast["min_packet_loss"] == 100 - fast["min_successive_pkts_rcvd"]
    assert fast["max_packet_loss"] > fast["min_packet_loss"]
    slow = monitor_settings("conservative", {"up_after": 20}, "x")
    assert slow["lsm"]["min_successive_pkts_rcvd"] == 20 and slow["interval_ms"] == 1000


def test_lsm_config_split_per_uplink() -> None:
    from router.monitor import split_lsm_config

    text = (
        "# managed\ndefaults {\n  name=defaults\n  status=2\n}\n\n"
        "connection {\n  name=isp1.1\n  checkip=203.0.113.10\n}\n\n"
        "connection {\n  name=isp1.2\n  checkip=203.0.113.11\n}\n\n"
        "connection {\n  name=isp2\n  checkip=203.0.113.10\n}\n\n"
        "group {\n  name=isp1\n  member-connection=isp1.1\n  member-connection=isp1.2\n}\n"
    )
    parts = split_lsm_config(text)
    assert sorted(parts) == ["isp1", "isp2"]
    assert all(p.startswith("defaults {\n  name=defaults") for p in parts.values())
    assert "name=isp1.2" in parts["isp1"] and "member-connection=isp1.1" in parts["isp1"]
    assert "isp1" not in parts["isp2"].replace("name=defaults", "")
