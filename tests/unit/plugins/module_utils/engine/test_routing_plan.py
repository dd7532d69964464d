"""Planning against captured kernel state: minimal, ordered, window-free batches."""
from __future__ import annotations

from prt_support import ScriptedRunner, fixture

# isort: split
import pytest
from ansible_collections.netops.multihome.plugins.module_utils.engine.errors import (
    EngineError,
    ValidationError,
)
from ansible_collections.netops.multihome.plugins.module_utils.engine.model.table_spec import parse_params
from ansible_collections.netops.multihome.plugins.module_utils.engine.routing import table as routing
from ansible_collections.netops.multihome.plugins.module_utils.engine.routing.iproute import (
    Rule,
    parse_links,
    parse_routes,
    parse_rules,
)
from ansible_collections.netops.multihome.plugins.module_utils.engine.routing.table import (
    KernelState,
    check_against_kernel,
    plan_changed,
    plan_table,
)

# exactly what the captured fixtures hold for table 101
CURRENT_ROUTES = [
    {"dest": "default", "gateway": "198.51.100.1", "dev": "wan1"},
    {"dest": "192.0.2.0/25", "type": "prohibit", "metric": 9, "family": "ipv4"},
    {"dest": "192.0.2.200/32", "gateway": "10.9.9.9", "dev": "wan1", "onlink": True},
    {"dest": "192.168.1.0/24", "dev": "lan1", "metric": 5},
    {"dest": "198.51.100.0/30", "dev": "wan1", "src": "198.51.100.2"},
    {"dest": "203.0.113.0/24", "type": "unreachable", "family": "ipv4"},
    {"dest": "203.0.113.7/32", "type": "blackhole", "family": "ipv4"},
    {"dest": "default", "gateway": "2001:db8:f1:1::1", "dev": "wan1"},
    {"dest": "2001:db8:f1:1::/64", "dev": "wan1"},
    {"dest": "2001:db8:ffff::/48", "type": "unreachable", "family": "ipv6"},
    {"dest": "2001:db8:ff00::1/128", "type": "blackhole", "metric": 7, "family": "ipv6"},
    {"dest": "2001:db8:1::/64", "gateway": "fe80::1", "dev": "wan1", "src": "2001:db8:f1:1::2"},
]
CURRENT_RULES = [
    {"priority": 1000, "from": "198.51.100.2/32"},
    {"priority": 1000, "from": "2001:db8:f1:1::2/128"},
    {"priority": 1001, "oif": "wan1", "family": "ipv4"},
    {"priority": 1002, "iif": "lan1", "to": "203.0.113.0/24"},
    {"priority": 1003, "from": "192.168.1.0/24", "invert": True},
    {"priority": 1004, "suppress_prefixlength": 24, "family": "ipv4"},
    {"priority": 1100, "fwmark": 0x100, "fwmask": 0xFF00, "family": "both"},
    {"priority": 1101, "fwmark": 7, "family": "ipv4"},
]


def kernel() -> KernelState:
    return KernelState(
        routes={4: parse_routes(fixture("route4_table101.json"), 4),
                6: parse_routes(fixture("route6_table101.json"), 6)},
        rules={4: parse_rules(fixture("rule4.json"), 4), 6: parse_rules(fixture("rule6.json"), 6)},
        links=parse_links(fixture("addr.json")),
    )


# The default lists are only read, never changed.
def plan(tmp_path, routes=CURRENT_ROUTES, rules=CURRENT_RULES, **kw):  # pylint: disable=dangerous-default-value
    p = {"name": "isp1", "id": 101, "routes": routes, "rules": rules,
         "main_suppress_default": {"priority": 900}}
    p.update(kw)
    spec = parse_params(p)
    files = routing.FileState(str(tmp_path / "isp1.conf"), [(101, "isp1")])
    return plan_table(spec, kernel(), files, spec.table_id)


def test_current_state_plans_nothing(tmp_path):
    result = plan(tmp_path)
    assert not plan_changed(result)
    assert result.commands() == []
    assert result.before == result.after


def test_changing_one_route_is_one_replace(tmp_path):
    routes = [dict(r) for r in CURRENT_ROUTES]
    routes[0]["gateway"] = "198.51.100.1"
    routes[0]["metric"] = 0
    routes[4] = {"dest": "198.51.100.0/30", "dev": "wan1"}  # src dropped
    result = plan(tmp_path, routes=routes)
    assert result.commands() == ["ip -4 route replace 198.51.100.0/30 dev wan1 metric 0 table 101"]


def test_changed_rule_is_added_before_the_superseded_one_goes(tmp_path):
    rules = [dict(r) for r in CURRENT_RULES]
    rules[6] = {"priority": 1100, "fwmark": 0x200, "fwmask": 0xFF00, "family": "both"}
    cmds = plan(tmp_path, rules=rules).commands()
    assert cmds == [
        "ip -4 rule add priority 1100 from all fwmark 0x200/0xff00 table 101",
        "ip -4 rule del priority 1100 from all fwmark 0x100/0xff00 table 101",
        "ip -6 rule add priority 1100 from all fwmark 0x200/0xff00 table 101",
        "ip -6 rule del priority 1100 from all fwmark 0x100/0xff00 table 101",
    ]


def test_purge_removes_unlisted_after_adding(tmp_path):
    routes = [CURRENT_ROUTES[0], {"dest": "default", "gateway": "198.51.100.1", "dev": "wan1", "metric": 10}]
    cmds = plan(tmp_path, routes=routes, rules=[CURRENT_RULES[0]]).commands()
    assert cmds[0] == "ip -4 route replace default via 198.51.100.1 dev wan1 metric 10 table 101"
    v4 = [c for c in cmds if c.startswith("ip -4")]
    # replaces, then rule removals, then route removals; gateway routes go before connected ones
    kinds = [c.split()[2] + " " + c.split()[3] for c in v4]
    assert kinds == sorted(kinds, key=["route replace", "rule add", "rule del", "route del"].index)
    assert "ip -4 route del 192.0.2.200/32 via 10.9.9.9 dev wan1 metric 0 onlink table 101" in cmds
    assert all("default via 198.51.100.1 dev wan1 metric 0 " not in c for c in cmds)
    assert "ip -6 route del default via 2001:db8:f1:1::1 dev wan1 metric 1024 table 101" in cmds
    assert not any("table 254" in c for c in cmds)  # the main suppress rule stays


def test_purge_false_keeps_unlisted(tmp_path):
    routes = [{"dest": "192.0.2.0/24", "dev": "lan1"}]
    cmds = plan(tmp_path, routes=routes, rules=[{"priority": 1000, "from": "198.51.100.3/32"}],
                purge=False).commands()
    assert cmds == [
        "ip -4 route replace 192.0.2.0/24 dev lan1 metric 0 table 101",
        "ip -4 rule add priority 1000 from 198.51.100.3/32 table 101",
        # same priority: the listed rule supersedes the old one even without purge
        "ip -4 rule del priority 1000 from 198.51.100.2/32 table 101",
    ]


def test_absent_removes_rules_then_routes_never_main_rules(tmp_path):
    spec = parse_params({"name": "isp1", "id": 101, "state": "absent"})
    files = routing.FileState(str(tmp_path / "isp1.conf"), [(101, "isp1")])
    (tmp_path / "isp1.conf").write_text("101 isp1\n")
    result = plan_table(spec, kernel(), files, 101)
    cmds = result.commands()
    assert result.remove_file
    v4 = [c for c in cmds if c.startswith("ip -4")]
    assert [c.split()[2] for c in v4][:7] == ["rule"] * 7 and v4[7].split()[2] == "route"
    assert len(v4) == 7 + 7
    assert not any("table 254" in c or "suppress_prefixlength 0" in c for c in cmds)
    assert "route show table isp1\n#" in result.after


def test_suppress_helper_added_and_removed(tmp_path):
    spec = parse_params({"name": "isp1", "id": 101, "routes": CURRENT_ROUTES, "rules": CURRENT_RULES,
                         "main_suppress_default": {"priority": 901}})
    files = routing.FileState(str(tmp_path / "isp1.conf"), [(101, "isp1")])
    cmds = plan_table(spec, kernel(), files, 101).commands()
    assert cmds == ["ip -4 rule add priority 901 from all table 254 suppress_prefixlength 0",
                    "ip -6 rule add priority 901 from all table 254 suppress_prefixlength 0"]
    cmds = plan(tmp_path, main_suppress_default={"priority": 900, "state": "absent"}).commands()
    assert cmds == ["ip -4 rule del priority 900 from all table 254 suppress_prefixlength 0",
                    "ip -6 rule del priority 900 from all table 254 suppress_prefixlength 0"]


def test_delete_that_would_hit_a_kept_rule_is_refused(tmp_path):
    k = kernel()
    keep = Rule(4, 1500, 101, src="192.0.2.0/24", iif="lan1")
    stale = Rule(4, 1500, 101, src="192.0.2.0/24")
    k.rules[4] = [keep, stale]
    spec = parse_params({"name": "isp1", "id": 101, "routes": [],
                         "rules": [{"priority": 1500, "from": "192.0.2.0/24", "iif": "lan1"}]})
    with pytest.raises(EngineError, match="would hit"):
        plan_table(spec, k, routing.FileState(str(tmp_path / "x"), []), 101)


def test_file_written_only_when_mapping_differs(tmp_path):
    assert not plan(tmp_path).write_file
    spec = parse_params({"name": "isp1", "id": 101, "routes": CURRENT_ROUTES, "rules": CURRENT_RULES,
                         "main_suppress_default": {"priority": 900}})
    result = plan_table(spec, kernel(), routing.FileState(str(tmp_path / "isp1.conf"), []), 101)
    assert result.write_file and plan_changed(result) and result.commands() == []
    assert "isp1.conf\n101\tisp1\n" in result.after


KERNEL_BAD = [
    ({"routes": [{"dest": "192.0.2.0/24", "dev": "wan9"}]}, "routes[0].dev", "existing interface"),
    ({"routes": [{"dest": "default", "gateway": "198.51.100.9", "dev": "wan1"}]},
     "routes[0].gateway", "connected prefix of dev wan1"),
    ({"routes": [{"dest": "default", "gateway": "192.168.1.7", "dev": "wan1"}]},
     "routes[0].gateway", "connected prefix of dev wan1"),
    ({"routes": [{"dest": "192.0.2.0/24", "dev": "wan1", "src": "192.0.2.1"}]},
     "routes[0].src", "configured on one of this router's interfaces"),
    ({"routes": [], "rules": [{"priority": 900, "oif": "wan1"}]}, "rules.priority", "lookup main"),
]


@pytest.mark.parametrize("override,option,allowed", KERNEL_BAD)
def test_bad_input_needing_kernel_state(override, option, allowed):
    spec = parse_params({"name": "isp1", "id": 101, **override})
    with pytest.raises(ValidationError) as err:
        check_against_kernel(spec, kernel())
    assert err.value.option == option and allowed in str(err.value)


def test_onlink_gateway_outside_prefixes_is_accepted():
    spec = parse_params({"name": "isp1", "id": 101, "routes": [
        {"dest": "default", "gateway": "10.9.9.9", "dev": "wan1", "onlink": True}]})
    check_against_kernel(spec, kernel())


def owned(tmp_path, text="101\tisp1\n"):
    """Our rt_tables.d file maps the table: it is ours (created by an earlier run)."""
    (tmp_path / "rt_tables.d").mkdir()
    (tmp_path / "rt_tables.d" / "isp1.conf").write_text(text)


def test_apply_table_check_mode_runs_no_batch_and_writes_nothing(tmp_path):
    owned(tmp_path)
    runner = ScriptedRunner(fixture("route4_table101.json"), fixture("route6_table101.json"))
    params = {"name": "isp1", "id": 101, "routes": CURRENT_ROUTES[:1], "rules": []}
    res = routing.apply_table(params, runner, check=True, etc_dir=str(tmp_path), mapping_dirs=[str(tmp_path)])
    assert res["changed"] and res["commands"]
    assert runner.batches() == []
    assert [p.name for p in tmp_path.rglob("*")] == ["rt_tables.d", "isp1.conf"]


def test_apply_table_refuses_an_explicit_id_holding_routes_it_did_not_create(tmp_path):
    runner = ScriptedRunner(fixture("route4_table101.json"), fixture("route6_table101.json"))
    params = {"name": "isp1", "id": 101, "routes": CURRENT_ROUTES[:1], "rules": []}
    with pytest.raises(ValidationError, match=r"table 101 already holds route 'default via 198.51.100.1"):
        routing.apply_table(params, runner, etc_dir=str(tmp_path), mapping_dirs=[str(tmp_path)])
    assert runner.batches() == [] and list(tmp_path.iterdir()) == []


def test_apply_table_real_run_writes_mapping_and_one_batch_per_family(tmp_path):
    owned(tmp_path, "# an older file of ours\n101\tisp1\n")
    runner = ScriptedRunner(fixture("route4_table101.json"), fixture("route6_table101.json"))
    params = {"name": "isp1", "id": 101, "routes": CURRENT_ROUTES[:1], "rules": []}
    with pytest.raises(EngineError, match="still differs"):
        # the scripted kernel does not change, so the read-back must notice
        routing.apply_table(params, runner, etc_dir=str(tmp_path), mapping_dirs=[str(tmp_path)])
    batches = runner.batches()
    assert [b[0] for b in batches] == [["ip", "-4", "-batch", "-"], ["ip", "-6", "-batch", "-"]]
    assert batches[0][1].startswith("rule del priority 1000 from 198.51.100.2/32 table 101\n")
    conf = tmp_path / "rt_tables.d" / "isp1.conf"
    assert conf.read_text().endswith("101\tisp1\n")


def test_apply_table_refuses_conflicting_id_naming_the_file(tmp_path):
    (tmp_path / "rt_tables").write_text("255 local\n254 main\n0x65 vpn\n")
    runner = ScriptedRunner()
    with pytest.raises(ValidationError, match=r"id 101 is already mapped to table 'vpn' in .*rt_tables"):
        routing.apply_table({"name": "isp1", "id": 101}, runner, etc_dir=str(tmp_path),
                            mapping_dirs=[str(tmp_path)])
    assert runner.calls == []
