"""policy_route_table on a real kernel: a router namespace, real ip, real Ansible runs."""
from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prt_helpers import Monitor, Router

# What the role passes for the first uplink (plus IPv6 and the main suppress helper).
ISP1 = {
    "name": "isp1",
    "id": 101,
    "routes": [
        {"dest": "default", "gateway": "198.51.100.1", "dev": "wan1"},
        {"dest": "198.51.100.0/30", "dev": "wan1", "src": "198.51.100.2"},
        {"dest": "192.168.1.0/24", "dev": "lan1"},
        {"dest": "default", "gateway": "2001:db8:f1:1::1", "dev": "wan1"},
        {"dest": "2001:db8:f1:1::/64", "dev": "wan1"},
        {"dest": "fd00:0:1:1::/64", "dev": "lan1"},
    ],
    "rules": [
        {"priority": 1100, "fwmark": "0x100", "fwmask": "0xff00"},
        {"priority": 1000, "from": "198.51.100.2/32"},
        {"priority": 1000, "from": "2001:db8:f1:1::2/128"},
        {"priority": 1001, "oif": "wan1"},
    ],
    "main_suppress_default": {"priority": 900},
}


@pytest.fixture
def router(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.fail("needs root for network namespaces")
    r = Router(f"{os.getpid() % 100000}", tmp_path).up()
    yield r
    r.down()


@pytest.fixture
def isp1(router: Router) -> Router:
    result, _ = router.module(ISP1)
    assert result["changed"] is True, result
    return router


def test_create_builds_table_rules_and_mapping(isp1: Router) -> None:
    assert isp1.routes("-4", "101") == [
        "default via 198.51.100.1 dev wan1",
        "192.168.1.0/24 dev lan1 scope link",
        "198.51.100.0/30 dev wan1 scope link src 198.51.100.2",
    ]
    v6 = isp1.routes("-6", "101")
    assert "default via 2001:db8:f1:1::1 dev wan1 metric 1024 pref medium" in v6
    assert "fd00:0:1:1::/64 dev lan1 metric 1024 pref medium" in v6 and len(v6) == 3
    rules4 = isp1.rules("-4")
    for rule in ("900: from all lookup main suppress_prefixlength 0",
                 "1000: from 198.51.100.2 lookup 101",
                 "1001: from all oif wan1 lookup 101",
                 "1100: from all fwmark 0x100/0xff00 lookup 101"):
        assert rule in rules4
    rules6 = isp1.rules("-6")
    assert "1000: from 2001:db8:f1:1::2 lookup 101" in rules6
    assert "1100: from all fwmark 0x100/0xff00 lookup 101" in rules6
    assert (isp1.etc / "rt_tables.d" / "isp1.conf").read_text().endswith("101\tisp1\n")
    # the name resolves for iproute2 inside the router (its own /etc), not on the host
    named = isp1.in_router(["ip", "route", "show", "table", "isp1"])
    from prt_helpers import sh
    assert "default via 198.51.100.1 dev wan1" in sh(named).stdout
    assert not Path("/etc/iproute2/rt_tables.d/isp1.conf").exists()


def test_rerun_is_unchanged_and_makes_no_netlink_change(isp1: Router) -> None:
    before = isp1.snapshot()
    with Monitor(isp1) as mon:
        result, _ = isp1.module(ISP1)
    assert result["changed"] is False and result["commands"] == []
    assert mon.events == []
    assert isp1.snapshot() == before


def test_change_one_route_and_one_rule_without_any_window(isp1: Router) -> None:
    params = copy.deepcopy(ISP1)
    params["routes"][0]["gateway"] = "198.51.100.1"
    params["routes"][0]["src"] = "198.51.100.2"          # changes the default route
    params["rules"][3] = {"priority": 1001, "oif": "wan2"}  # supersedes 'oif wan1'
    with Monitor(isp1) as mon:
        result, _ = isp1.module(params)
    assert result["changed"] is True
    v4 = [c for c in result["commands"] if c.startswith("ip -4")]
    assert v4 == ["ip -4 route replace default via 198.51.100.1 dev wan1 src 198.51.100.2 metric 0 table 101",
                  "ip -4 rule add priority 1001 from all oif wan2 table 101",
                  "ip -4 rule del priority 1001 from all oif wan1 table 101"]
    # no route of the table was ever deleted; the new rule existed before the old one went
    assert not [e for e in mon.events if e.startswith("Deleted") and "table 101" in e
                and "lookup" not in e], mon.events
    added = next(i for i, e in enumerate(mon.events) if "oif wan2" in e and not e.startswith("Deleted"))
    deleted = next(i for i, e in enumerate(mon.events) if e.startswith("Deleted") and "oif wan1" in e)
    assert added < deleted
    assert isp1.routes("-4", "101")[0] == "default via 198.51.100.1 dev wan1 src 198.51.100.2"
    assert len(isp1.routes("-4", "101")) == 3


def test_metric_change_adds_the_new_route_before_removing_the_old(isp1: Router) -> None:
    params = copy.deepcopy(ISP1)
    params["routes"][0]["metric"] = 50
    with Monitor(isp1) as mon:
        isp1.module(params)
    new = next(i for i, e in enumerate(mon.events) if e.startswith("default via 198.51.100.1")
               and "metric 50" in e)
    old = next(i for i, e in enumerate(mon.events) if e.startswith("Deleted default via 198.51.100.1"))
    assert new < old
    assert isp1.routes("-4", "101")[0] == "default via 198.51.100.1 dev wan1 metric 50"


def test_purge_removes_only_this_tables_unlisted_entries(isp1: Router) -> None:
    isp1.ip("route", "add", "203.0.113.0/24", "dev", "wan2", "table", "101")
    isp1.ip("rule", "add", "priority", "1500", "iif", "lan1", "table", "101")
    isp1.ip("route", "add", "203.0.113.0/24", "dev", "wan2", "table", "102")
    isp1.ip("rule", "add", "priority", "1600", "iif", "lan1", "table", "102")
    isp1.ip("route", "add", "192.0.2.0/24", "dev", "wan2")
    result, _ = isp1.module(dict(ISP1, purge=False))
    assert result["changed"] is False
    assert "203.0.113.0/24 dev wan2 scope link" in isp1.routes("-4", "101")
    result, _ = isp1.module(ISP1)
    assert result["commands"] == ["ip -4 rule del priority 1500 from all iif lan1 table 101",
                                  "ip -4 route del 203.0.113.0/24 dev wan2 metric 0 table 101"]
    assert "203.0.113.0/24 dev wan2 scope link" not in isp1.routes("-4", "101")
    assert not [r for r in isp1.rules("-4") if r.startswith("1500:")]
    # someone else's table, rule and main route stay
    assert isp1.routes("-4", "102") == ["203.0.113.0/24 dev wan2 scope link"]
    assert "1600: from all iif lan1 lookup 102" in isp1.rules("-4")
    assert "192.0.2.0/24 dev wan2 scope link" in isp1.routes("-4", "main")


def test_absent_removes_table_rules_and_file_only(isp1: Router) -> None:
    isp1.ip("rule", "add", "priority", "1600", "iif", "lan1", "table", "102")
    main_before = isp1.routes("-4", "main") + isp1.routes("-6", "main")
    result, _ = isp1.module({"name": "isp1", "state": "absent"})
    assert result["changed"] is True
    assert isp1.routes("-4", "101") == [] and isp1.routes("-6", "101") == []
    assert not [r for r in isp1.rules("-4") + isp1.rules("-6") if r.endswith("lookup 101")]
    assert "1600: from all iif lan1 lookup 102" in isp1.rules("-4")
    # the shared main suppress rule is not this table's to remove
    assert "900: from all lookup main suppress_prefixlength 0" in isp1.rules("-4")
    assert not (isp1.etc / "rt_tables.d" / "isp1.conf").exists()
    assert isp1.routes("-4", "main") + isp1.routes("-6", "main") == main_before
    again, _ = isp1.module({"name": "isp1", "state": "absent"})
    assert again["changed"] is False
    helper, _ = isp1.module({"name": "isp1", "state": "absent",
                             "main_suppress_default": {"priority": 900, "state": "absent"}})
    assert helper["changed"] is True
    assert not [r for r in isp1.rules("-4") + isp1.rules("-6") if "suppress_prefixlength" in r]


def test_check_mode_reports_exactly_what_a_real_run_does(isp1: Router) -> None:
    params = copy.deepcopy(ISP1)
    params["routes"] = [*params["routes"][:2], {"dest": "203.0.113.0/24", "type": "unreachable"}]
    params["rules"] = params["rules"][:2]
    before = isp1.snapshot()
    checked, _ = isp1.module(params, check=True)
    assert checked["changed"] is True and checked["commands"]
    assert isp1.snapshot() == before
    real, _ = isp1.module(params)
    assert real["commands"] == checked["commands"]
    assert real["after"] == checked["after"]
    assert "unreachable 203.0.113.0/24" in isp1.routes("-4", "101")


def test_check_mode_on_an_unchanged_table_reports_no_change(isp1: Router) -> None:
    result, _ = isp1.module(ISP1, check=True)
    assert result["changed"] is False and result["commands"] == []


def test_diff_shows_ip_syntax(isp1: Router) -> None:
    params = copy.deepcopy(ISP1)
    params["routes"][0] = {"dest": "default", "gateway": "198.51.100.5", "dev": "wan2"}
    result, out = isp1.module(params, check=True, diff=True)
    assert "-default via 198.51.100.1 dev wan1 metric 0" in out
    assert "+default via 198.51.100.5 dev wan2 metric 0" in out
    assert "1100:\tfrom all fwmark 0x100/0xff00 lookup isp1\n" in result["after"]
    assert result["before"] != result["after"]


def test_ipv6_only_table_with_reject_route_and_link_local_gateway(router: Router) -> None:
    params = {"name": "v6only", "id": 106, "routes": [
        {"dest": "default", "gateway": "fe80::1", "dev": "wan2"},
        {"dest": "2001:db8:dead::/48", "type": "unreachable"},
        {"dest": "2001:db8:beef::/48", "type": "blackhole", "metric": 10},
    ], "rules": [{"priority": 2000, "fwmark": 0x200, "fwmask": 0xFF00}]}
    result, _ = router.module(params)
    assert result["changed"] is True
    v6 = router.routes("-6", "106")
    assert "default via fe80::1 dev wan2 metric 1024 pref medium" in v6
    assert any(r.startswith("unreachable 2001:db8:dead::/48") for r in v6)
    assert any(r.startswith("blackhole 2001:db8:beef::/48") and "metric 10" in r for r in v6)
    # a rule without addresses follows the table's families: IPv6 only
    assert "2000: from all fwmark 0x200/0xff00 lookup 106" in router.rules("-6")
    assert not [r for r in router.rules("-4") if r.startswith("2000:")]
    again, _ = router.module(params)
    assert again["changed"] is False


def _other_table(router: Router) -> None:
    (router.etc / "rt_tables.d" / "vpn.conf").write_text("150\tvpn\n")
    router.ip("rule", "add", "priority", "1200", "fwmark", "0x300/0xff00", "table", "150")


BAD_INPUTS = [
    ("reserved id", {"id": 254}, "id: invalid value 254"),
    ("id of another table", {"name": "isp9", "id": 150}, "vpn.conf"),
    ("renumbering", {"id": 102}, "isp1.conf"),
    ("reserved name", {"name": "main"}, "name: invalid value 'main'"),
    ("bad address", {"routes": [{"dest": "default", "gateway": "198.51.100.256", "dev": "wan1"}]},
     "routes[0].gateway: invalid value '198.51.100.256'"),
    ("mixed families", {"routes": [{"dest": "192.0.2.0/24", "gateway": "2001:db8:f1:1::1", "dev": "wan1"}]},
     "routes[0]: invalid value"),
    ("gateway outside connected prefixes", {"routes": [{"dest": "default", "gateway": "198.51.100.9",
                                                        "dev": "wan1"}]},
     "routes[0].gateway: invalid value '198.51.100.9'"),
    ("unknown device", {"routes": [{"dest": "192.0.2.0/24", "dev": "wan7"}]},
     "routes[0].dev: invalid value 'wan7'"),
    ("src not local", {"routes": [{"dest": "192.0.2.0/24", "dev": "wan1", "src": "198.51.100.3"}]},
     "routes[0].src: invalid value '198.51.100.3'"),
    ("fwmark out of range", {"rules": [{"priority": 1100, "fwmark": "0x100000000"}]},
     "rules[0].fwmark: invalid value"),
    ("mask out of range", {"rules": [{"priority": 1100, "fwmark": 1, "fwmask": 0}]},
     "rules[0].fwmask: invalid value 0"),
    ("duplicate priorities", {"rules": [{"priority": 1000, "from": "198.51.100.2/32"},
                                        {"priority": 1000, "oif": "wan1"}]},
     "rules[1].priority: invalid value 1000"),
    ("priority of another table", {"rules": [{"priority": 1200, "oif": "wan1"}]},
     "rules.priority: invalid value 1200"),
    ("host bits in prefix", {"rules": [{"priority": 1000, "from": "198.51.100.2/30"}]},
     "rules[0].from: invalid value '198.51.100.2/30'"),
]


def test_bad_inputs_fail_before_any_change(isp1: Router) -> None:
    _other_table(isp1)
    before = isp1.snapshot()
    failures = []
    for case, override, message in BAD_INPUTS:
        params = copy.deepcopy(ISP1)
        params["routes"] = [params["routes"][0], *params["routes"][2:3]]
        params.update(override)
        result, _ = isp1.module(params)
        if not (result.get("failed") and message in result.get("msg", "")):
            failures.append((case, result.get("msg"), result.get("commands")))
        if isp1.snapshot() != before:
            failures.append((case, "kernel or rt_tables.d changed"))
            before = isp1.snapshot()
    assert failures == []
    assert len(BAD_INPUTS) >= 10
