"""Reading the kernel's event lines without losing any, and mapping them to uplinks."""
from __future__ import annotations

import os

from router.kernel_events import KernelEvent, LineReader, classify

IFACES = {"wan1": "isp1", "wan3": "lte"}
TABLES = {"101": "isp1", "mh_isp1": "isp1", "103": "lte", "mh_lte": "lte"}


def test_two_lines_in_one_read_are_both_returned_and_a_partial_one_waits() -> None:
    r, w = os.pipe()
    reader = LineReader(r)
    os.write(w, b"first\nsecond\nthi")
    assert reader.read_lines() == ["first", "second"]
    os.write(w, b"rd\n")
    assert reader.read_lines() == ["third"]
    os.write(w, b"tail")
    os.close(w)
    assert reader.read_lines() == [] and not reader.eof
    assert reader.read_lines() == ["tail"] and reader.eof
    os.close(r)


def test_link_address_and_deleted_table_route_lines_name_their_uplink() -> None:
    up = "7: wan3@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP group default"
    gone = "Deleted 7: wan3@NONE: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN"
    addr = "7: wan3    inet 100.64.9.2/32 scope global wan3\\       valid_lft forever preferred_lft forever"
    assert classify(up, IFACES, TABLES) == KernelEvent("lte", "link", True, True)
    assert classify(gone, IFACES, TABLES) == KernelEvent("lte", "link", False, False)
    assert classify(addr, IFACES, TABLES) == KernelEvent("lte", "address")
    assert classify("Deleted default via 198.51.100.1 dev wan1 table 101 ", IFACES, TABLES) == \
        KernelEvent("isp1", "route")
    assert classify("Deleted default via 100.64.9.1 dev wan3 table mh_lte", IFACES, TABLES) == \
        KernelEvent("lte", "route")


def test_a_default_route_a_dhcp_client_adds_in_main_is_an_event() -> None:
    line = "default via 10.77.0.1 dev wan3 proto dhcp src 10.77.0.20 metric 1024 "
    assert classify(line, IFACES, TABLES) == KernelEvent("lte", "route")


def test_added_routes_and_other_interfaces_are_not_events() -> None:
    assert classify("default via 198.51.100.1 dev wan1 table 101 ", IFACES, TABLES) is None
    assert classify("Deleted default via 10.0.0.1 dev eth9 table 200", IFACES, TABLES) is None
    assert classify("Deleted local 10.9.0.2 dev wan1 table local proto kernel", IFACES, TABLES) is None
    assert classify("5: lan1    inet 192.168.1.1/24 scope global lan1", IFACES, TABLES) is None
