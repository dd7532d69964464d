"""Parsing captured ``ip -j`` output (iproute2 6.1) into the normalised route/rule model."""
from __future__ import annotations

from prt_support import fixture

# isort: split
from ansible_collections.netops.multihome.plugins.module_utils.engine.routing.iproute import (
    FULL_MASK,
    Route,
    Rule,
    parse_links,
    parse_routes,
    parse_rules,
)


def by_dst(routes):
    return {r.dst: r for r in routes}


def test_ipv4_routes_every_type_and_attribute():
    routes = by_dst(parse_routes(fixture("route4_table101.json"), 4))
    assert set(routes) == {"default", "192.0.2.0/25", "192.0.2.200/32", "192.168.1.0/24",
                           "198.51.100.0/30", "203.0.113.0/24", "203.0.113.7/32"}
    assert routes["default"] == Route(4, "default", gateway="198.51.100.1", dev="wan1", metric=0)
    assert routes["192.0.2.0/25"] == Route(4, "192.0.2.0/25", type="prohibit", metric=9)
    assert routes["192.0.2.200/32"].onlink and routes["192.0.2.200/32"].gateway == "10.9.9.9"
    assert routes["192.168.1.0/24"].metric == 5
    assert routes["198.51.100.0/30"].src == "198.51.100.2"
    assert routes["203.0.113.0/24"].type == "unreachable"
    assert routes["203.0.113.7/32"].type == "blackhole"


def test_ipv6_routes_default_metric_and_no_dev_on_reject_routes():
    routes = by_dst(parse_routes(fixture("route6_table101.json"), 6))
    assert routes["default"] == Route(6, "default", gateway="2001:db8:f1:1::1", dev="wan1", metric=1024)
    # the kernel reports 'dev lo' for reject routes; the model leaves it out so input compares equal
    assert routes["2001:db8:ffff::/48"] == Route(6, "2001:db8:ffff::/48", type="unreachable", metric=1024)
    assert routes["2001:db8:ff00::1/128"] == Route(6, "2001:db8:ff00::1/128", type="blackhole", metric=7)
    assert routes["2001:db8:1::/64"].gateway == "fe80::1"
    assert routes["2001:db8:1::/64"].src == "2001:db8:f1:1::2"


def test_numeric_route_types_from_ip_N():
    text = '[{"type":"8","dst":"192.0.2.0/25","metric":9,"flags":[]},{"type":"7","dst":"203.0.113.0/24"}]'
    assert [r.type for r in parse_routes(text, 4)] == ["prohibit", "unreachable"]


def test_unmanaged_route_attributes_never_compare_equal():
    text = '[{"dst":"192.0.2.0/24","nexthops":[{"gateway":"198.51.100.1","dev":"wan1"}],"flags":[]}]'
    (route,) = parse_routes(text, 4)
    assert route.extra.startswith("nexthops")
    assert route != Route(4, "192.0.2.0/24")


def test_ipv4_rules_every_selector_in_kernel_order():
    rules = parse_rules(fixture("rule4.json"), 4)
    assert [r.priority for r in rules] == [0, 900, 1000, 1001, 1002, 1003, 1004, 1100, 1101, 32766, 32767]
    by = {r.priority: r for r in rules}
    assert by[900] == Rule(4, 900, 254, suppress_prefixlength=0)
    assert by[1000] == Rule(4, 1000, 101, src="198.51.100.2/32")
    assert by[1001] == Rule(4, 1001, 101, oif="wan1")
    assert by[1002] == Rule(4, 1002, 101, dst="203.0.113.0/24", iif="lan1")
    assert by[1003] == Rule(4, 1003, 101, src="192.168.1.0/24", invert=True)
    assert by[1004] == Rule(4, 1004, 101, suppress_prefixlength=24)
    assert by[1100] == Rule(4, 1100, 101, fwmark=0x100, fwmask=0xFF00)
    # no fwmask printed means the kernel's full mask
    assert by[1101] == Rule(4, 1101, 101, fwmark=0x7, fwmask=FULL_MASK)
    assert by[32766].table == 254 and by[0].table == 255


def test_ipv6_rules():
    by = {r.priority: r for r in parse_rules(fixture("rule6.json"), 6)}
    assert by[1000] == Rule(6, 1000, 101, src="2001:db8:f1:1::2/128")
    assert by[1100] == Rule(6, 1100, 101, fwmark=0x100, fwmask=0xFF00)
    assert by[900] == Rule(6, 900, 254, suppress_prefixlength=0)


def test_rule_rendering_matches_ip_rule_syntax():
    rule = Rule(4, 1100, 101, fwmark=0x100, fwmask=0xFF00, iif="lan1", invert=True)
    assert rule.spec() == ["priority", "1100", "not", "from", "all", "fwmark", "0x100/0xff00",
                           "iif", "lan1", "table", "101"]
    assert rule.text({101: "isp1"}) == "1100:\tnot from all fwmark 0x100/0xff00 iif lan1 lookup isp1"
    assert Rule(4, 900, 254, suppress_prefixlength=0).text() == \
        "900:\tfrom all lookup main suppress_prefixlength 0"


def test_route_rendering():
    route = Route(4, "192.0.2.0/24", gateway="10.9.9.9", dev="wan1", src="198.51.100.2",
                  metric=5, onlink=True)
    assert route.spec() == ["192.0.2.0/24", "via", "10.9.9.9", "dev", "wan1", "src", "198.51.100.2",
                            "metric", "5", "onlink"]
    assert Route(6, "default", type="unreachable", metric=1024).spec() == ["unreachable", "default",
                                                                           "metric", "1024"]


def test_unknown_rule_selectors_are_kept_visible():
    text = '[{"priority":1000,"src":"all","table":"101","uidrange":"1000-2000"}]'
    (rule,) = parse_rules(text, 4)
    assert "uidrange" in rule.extra
    assert rule != Rule(4, 1000, 101)


def test_links_prefixes_and_addresses():
    links = parse_links(fixture("addr.json"))
    assert "198.51.100.0/30" in links["wan1"].prefixes
    assert "2001:db8:f1:1::/64" in links["wan1"].prefixes
    assert "198.51.100.2" in links["wan1"].addresses
    assert links["lan1"].prefixes[0] == "192.168.1.0/24"
    assert "127.0.0.1" in links["lo"].addresses
