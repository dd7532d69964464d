"""Issue 13 on the lab's router r1 after one site.yml run: a marked flow whose uplink route
is gone fails instead of leaking, a table id someone else uses is refused, LAN strictness
holds against a distribution's ``all.rp_filter``, foreign mark users overlapping our mask are
refused with the router left as it was, recorded failover states follow a monotonic order
and are ignored when failover is off, the environment cannot redirect the hook or the CLI,
a failed ``ip -batch`` is rolled back, and an unconfirmed change that cuts SSH reverts.
(Overlapping prefixes: tests/kernel/test_role_fleet_validation.py.)

The failover monitor is stopped for this module so LSM does not react to the faults made
here (the hook still runs the engine itself when no monitor answers).
"""
from __future__ import annotations

import ipaddress
import json
import time

import mhlab
import pytest
from harness import wait_for

LIB = "/usr/local/lib/netops-multihome"
HOOK = f"{LIB}/multihome-hook"
MODEL = "/etc/netops-multihome/model.json"
STATE = "/var/lib/netops-multihome/state"
TABLE = "netops_multihome"
ISP1, ISP2 = "198.51.100.2", "198.51.100.6"


@pytest.fixture(scope="module")
def router(lab):
    first = lab.playbook()
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    lab.run("r1", ["multihome", "monitor", "--stop"])
    return lab


def model(lab) -> dict:
    return json.loads(lab.run("r1", ["cat", MODEL]).stdout)


def engine(lab, code: str, check: bool = False):
    """Run CODE on r1 with the engine the role installed importable."""
    return lab.run("r1", ["python3", "-c", f"import sys; sys.path.insert(0, {LIB!r})\n{code}"], check=check)


def rp_filter_drops(lab) -> int:
    lines = lab.run("r1", ["cat", "/proc/net/netstat"]).stdout.splitlines()
    names, values = lines[0].split(), lines[1].split()
    return int(values[names.index("IPReversePathFilter")])


# ------------------------------------------------------------------ routing
def test_marked_flow_whose_uplink_route_is_gone_fails_instead_of_leaving_by_the_other_isp(router) -> None:
    lab = router
    table = str(model(lab)["failover"]["uplinks"]["isp2"]["table"])
    lab.run("r1", ["ip", "route", "del", "default", "via", "198.51.100.5", "table", table])
    lab.reset_spoofed("isp1")
    try:
        seen = lab.flows("c1", 8, timeout=1.0)
    finally:
        lab.run("r1", ["multihome", "apply", "--only", "routing"])
    assert seen.count(ISP1) == 4, seen
    assert all(x.startswith("error") for x in seen if x != ISP1), seen
    assert lab.spoofed("isp1") == 0
    assert set(lab.flows("c1", 4)) == {ISP1, ISP2}


@pytest.mark.parametrize("family", [4, 6])
def test_every_uplink_table_ends_in_an_unreachable_default(router, family) -> None:
    lab = router
    for info in model(lab)["failover"]["uplinks"].values():
        out = lab.run("r1", ["ip", f"-{family}", "route", "show", "table", str(info["table"])]).stdout
        assert "unreachable default" in out, out


def test_explicit_table_id_holding_foreign_routes_and_rules_is_refused(router) -> None:
    lab = router
    lab.run("r1", ["ip", "route", "add", "10.77.0.0/24", "dev", "lan1", "table", "4242"])
    lab.run("r1", ["ip", "rule", "add", "priority", "777", "from", "10.77.0.0/24", "table", "4242"])
    try:
        before = lab.snapshot()
        res = engine(lab, """
from engine.routing.table import apply_table
from engine.runner import Runner
apply_table({"name": "admin_vpn", "id": 4242, "purge": True, "routes": [
    {"dest": "default", "gateway": "198.51.100.1", "dev": "wan1"}]}, Runner())
""")
        assert res.returncode != 0
        assert "4242" in res.stderr and "10.77.0.0/24" in res.stderr, res.stderr
        assert lab.snapshot() == before
    finally:
        lab.run("r1", ["ip", "rule", "del", "priority", "777"], check=False)
        lab.run("r1", ["ip", "route", "flush", "table", "4242"], check=False)


# ------------------------------------------------------------------ rp_filter
def test_lan_stays_strict_when_the_distribution_sets_all_rp_filter_loose(router) -> None:
    """The lab's routers start with all.rp_filter=2 (Ubuntu): a c1 packet with lan2's source
    is dropped by r1's reverse-path check, not forwarded."""
    lab = router
    dev = "eth0"
    lab.run("c1", ["ip", "addr", "add", "192.168.2.99/32", "dev", dev])
    try:
        before = rp_filter_drops(lab)
        assert all(x.startswith("error") for x in lab.flows("c1", 3, src="192.168.2.99", timeout=0.5))
        assert rp_filter_drops(lab) >= before + 3
    finally:
        lab.run("c1", ["ip", "addr", "del", "192.168.2.99/32", "dev", dev])


# ------------------------------------------------------------------ coexistence
FOREIGN_MARK_RULE = ["priority", "600", "fwmark", "0x4000/0xc000", "table", "4243"]


def test_foreign_fwmark_rule_overlapping_our_mask_is_refused_with_a_mask_that_fits(router) -> None:
    lab = router
    lab.run("r1", ["ip", "rule", "add", *FOREIGN_MARK_RULE])
    try:
        before = lab.snapshot()
        res = lab.run("r1", ["multihome", "apply"], check=False)
        assert res.returncode != 0
        assert "0x4000/0xc000" in res.stderr and "multihome_mark_mask" in res.stderr, res.stderr
        assert lab.snapshot() == before
    finally:
        lab.run("r1", ["ip", "rule", "del", *FOREIGN_MARK_RULE])


def test_foreign_marks_outside_our_mask_are_accepted(router) -> None:
    lab = router
    rule = ["priority", "601", "fwmark", "0x10000/0x10000", "table", "4243"]
    lab.run("r1", ["ip", "rule", "add", *rule])
    lab.run("r1", ["nft", "add table ip other; add chain ip other pre { type filter hook prerouting "
                   "priority 0; }; add rule ip other pre meta mark set meta mark or 0x20000"])
    try:
        res = lab.run("r1", ["multihome", "apply"], check=False)
        assert res.returncode == 0, res.stderr
    finally:
        lab.run("r1", ["ip", "rule", "del", *rule])
        lab.run("r1", ["nft", "delete", "table", "ip", "other"])


def test_foreign_nft_mark_user_overlapping_our_mask_is_named(router) -> None:
    lab = router
    lab.run("r1", ["nft", "add table ip kubeish; add chain ip kubeish pre { type filter hook prerouting "
                   "priority 0; }; add rule ip kubeish pre meta mark set meta mark or 0x4000"])
    try:
        res = lab.run("r1", ["multihome", "apply"], check=False)
        assert res.returncode != 0
        assert "kubeish" in res.stderr and "0x4000" in res.stderr, res.stderr
    finally:
        lab.run("r1", ["nft", "delete", "table", "ip", "kubeish"])


# ------------------------------------------------------------------ failover records
def lsm_argv(state: str, name: str, stamp: float):
    return [state, name, "203.0.113.10", "wan1", "-", "0", "0", "0", "0", "0", "0", "0", "0",
            ISP1, "up" if state == "down" else "down", str(int(stamp))]


def recorded(lab, uplink: str) -> str:
    return lab.run("r1", ["cat", f"{STATE}/{uplink}"], check=False).stdout.split(" ")[0]


def test_event_after_the_clock_stepped_back_is_still_applied(router) -> None:
    """An event stamped earlier than the last one (the clock went back) is a new event."""
    lab = router
    now = time.time()
    try:
        lab.run("r1", [HOOK, *lsm_argv("down", "isp1", now)])
        assert recorded(lab, "isp1") == "down"
        lab.run("r1", [HOOK, *lsm_argv("up", "isp1", now - 3600)])
        assert recorded(lab, "isp1") == "up"
        chain = lab.run("r1", ["nft", "list", "chain", "inet", TABLE, "choose"]).stdout
        assert "mark_isp1" in chain, chain
    finally:
        lab.run("r1", [HOOK, *lsm_argv("up", "isp1", time.time() + 1)])


def test_apply_ignores_and_clears_records_when_failover_is_off(router) -> None:
    lab = router
    saved = lab.run("r1", ["cat", MODEL]).stdout
    off = json.loads(saved)
    off["failover"]["enabled"] = False
    try:
        lab.run("r1", [HOOK, *lsm_argv("down", "isp2", time.time())])
        assert recorded(lab, "isp2") == "down"
        lab.run("r1", ["sh", "-c", f"cat > {MODEL}"], stdin=json.dumps(off))
        lab.run("r1", ["multihome", "apply"])
        chain = lab.run("r1", ["nft", "list", "chain", "inet", TABLE, "choose"]).stdout
        assert "mark_isp1" in chain and "mark_isp2" in chain, chain
        assert lab.run("r1", ["ls", "-A", STATE]).stdout.split() == []
    finally:
        lab.run("r1", ["sh", "-c", f"cat > {MODEL}"], stdin=saved)
        lab.run("r1", ["multihome", "apply"])


# ------------------------------------------------------------------ security
PLANT = """mkdir -p /tmp/planted/engine/hook /tmp/planted/router
for d in engine engine/hook router; do
  printf 'open("/tmp/planted-ran", "w").write("yes")\\n' > /tmp/planted/$d/__init__.py
done
cp /tmp/planted/engine/__init__.py /tmp/planted/engine/hook/protocol.py
rm -f /tmp/planted-ran"""


@pytest.mark.parametrize("variable", ["MULTIHOME_LIB", "MULTIHOME_ROOT"])
def test_hook_and_cli_import_and_use_only_the_installed_layout(router, variable) -> None:
    lab = router
    lab.run("r1", ["sh", "-c", PLANT])
    try:
        env = ["env", f"{variable}=/tmp/planted"]
        lab.run("r1", [*env, HOOK, *lsm_argv("up", "isp1", time.time())])
        lab.run("r1", [*env, "multihome", "status"])
        assert lab.run("r1", ["test", "-e", "/tmp/planted-ran"], check=False).returncode == 1
        assert lab.run("r1", ["find", "/tmp/planted", "-name", "*.log"]).stdout == ""
        assert recorded(lab, "isp1") == "up"
    finally:
        lab.run("r1", ["rm", "-rf", "/tmp/planted", "/tmp/planted-ran"])


def test_hook_started_through_a_symlink_imports_the_engine_it_links_to(router) -> None:
    """The hook finds its engine beside the file it is, not beside a link to it."""
    lab = router
    lab.run("r1", ["sh", "-c", f"{PLANT}\nln -s {HOOK} /tmp/planted/multihome-hook"])
    try:
        lab.run("r1", ["/tmp/planted/multihome-hook", *lsm_argv("down", "isp1", time.time())])
        assert lab.run("r1", ["test", "-e", "/tmp/planted-ran"], check=False).returncode == 1
        assert recorded(lab, "isp1") == "down"
    finally:
        lab.run("r1", [HOOK, *lsm_argv("up", "isp1", time.time() + 1)])
        lab.run("r1", ["rm", "-rf", "/tmp/planted", "/tmp/planted-ran"])


# ------------------------------------------------------------------ atomicity
ROLLBACK = """
from engine.routing.table import apply_table
from engine.runner import Runner
from engine.errors import EngineError

class AdminMeanwhile(Runner):
    '''Another administrator deletes rule 4400 just before our batch runs: the batch's
    last line (rule del 4400) fails after the lines before it were applied.'''
    def run(self, argv, stdin=None, check=True):
        if argv[-2:] == ["-batch", "-"]:
            super().run(["ip", "rule", "del", "priority", "4400"])
        return super().run(argv, stdin, check)

base = {"name": "rbtest", "id": 4300, "routes": [{"dest": "10.88.0.0/24", "dev": "lan1"}]}
apply_table({**base, "rules": [{"priority": 4400, "from": "10.88.0.0/24"}]}, Runner())
try:
    apply_table({**base, "routes": base["routes"] + [{"dest": "10.89.0.0/24", "dev": "lan1"}],
                 "rules": [{"priority": 4401, "from": "10.88.0.0/24"}]}, AdminMeanwhile())
except EngineError as exc:
    print(exc)
"""


def test_failed_ip_batch_is_rolled_back_and_reported(router) -> None:
    lab = router
    try:
        res = engine(lab, ROLLBACK, check=True)
        assert "partially applied, rolled back" in res.stdout, res.stdout + res.stderr
        assert lab.run("r1", ["ip", "route", "show", "table", "4300"]).stdout.split() == \
            ["10.88.0.0/24", "dev", "lan1", "scope", "link"]
        assert "4401" not in lab.run("r1", ["ip", "rule"]).stdout
    finally:
        engine(lab, "from engine.routing.table import apply_table\nfrom engine.runner import Runner\n"
                    "apply_table({'name': 'rbtest', 'id': 4300, 'state': 'absent'}, Runner())")


# ------------------------------------------------------------------ commit-confirm
def mgmt_ssh_open(lab) -> bool:
    return mhlab.tcp_open(lab.state["routers"]["r1"]["mgmt"], 22, 0.5)


def with_rule_to_the_admin(lab, priority: int, host: str) -> str:
    """The saved model plus a rule sending traffic to HOST through isp1's table."""
    changed = model(lab)
    changed["routing"][0]["rules"].append({"priority": priority, "to": f"{host}/32"})
    return json.dumps(changed)


def test_change_that_cuts_ssh_is_reverted_unless_confirmed(router) -> None:
    lab = router
    saved = lab.run("r1", ["cat", MODEL]).stdout
    admin = str(ipaddress.ip_address(lab.state["routers"]["r1"]["mgmt"]) - 1)
    lab.run("r1", ["multihome", "apply"])  # the model in force is the confirmed one
    lab.run("r1", ["sh", "-c", f"cat > {MODEL}"], stdin=with_rule_to_the_admin(lab, 900, admin))
    try:
        lab.run("r1", ["multihome", "apply", "--confirm", "6"])
        assert not mgmt_ssh_open(lab), "the change should cut the management path"
        back = wait_for(lambda: mgmt_ssh_open(lab), 6 + 10, step=0.2)
        assert back is not None, lab.run("r1", ["tail", "-5", "/var/log/netops-multihome/events.log"]).stdout
        assert lab.ssh("r1", "cat " + MODEL).stdout == saved
        assert "900:" not in lab.run("r1", ["ip", "rule"]).stdout
    finally:
        lab.run("r1", ["sh", "-c", f"cat > {MODEL}"], stdin=saved)
        lab.run("r1", ["multihome", "apply"])


def test_confirmed_change_stays(router) -> None:
    lab = router
    saved = lab.run("r1", ["cat", MODEL]).stdout
    lab.run("r1", ["sh", "-c", f"cat > {MODEL}"], stdin=with_rule_to_the_admin(lab, 901, "10.99.99.99"))
    try:
        lab.run("r1", ["multihome", "apply", "--confirm", "3"])
        lab.ssh("r1", "multihome confirm")
        time.sleep(4.5)
        assert "901:" in lab.run("r1", ["ip", "rule"]).stdout
        assert "10.99.99.99" in lab.run("r1", ["cat", MODEL]).stdout
    finally:
        lab.run("r1", ["sh", "-c", f"cat > {MODEL}"], stdin=saved)
        lab.run("r1", ["multihome", "apply"])
    assert "901:" not in lab.run("r1", ["ip", "rule"]).stdout


def test_site_with_confirm_timeout_arms_then_confirms_over_a_new_connection(router) -> None:
    lab = router
    before = len(lab.run("r1", ["cat", "/var/log/netops-multihome/events.log"]).stdout.splitlines())
    play = lab.playbook("-e", json.dumps({"multihome_confirm_timeout": 300}))
    assert play.returncode == 0, play.stdout[-3000:]
    assert "Arm the revert timer" in play.stdout and "Keep the change" in play.stdout
    events = lab.run("r1", ["cat", "/var/log/netops-multihome/events.log"]).stdout.splitlines()[before:]
    assert any("confirm: change confirmed" in x for x in events), events
    pending = "/var/lib/netops-multihome/confirm.pending"
    assert lab.run("r1", ["test", "-e", pending], check=False).returncode == 1
