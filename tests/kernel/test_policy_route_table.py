"""policy_route_table on a real kernel: the lab's router r1, real ip, real Ansible runs.

r1 has its own /etc (an overlay), so the module's rt_tables.d files stay inside the lab.
Each test starts from the plain router; a fixture puts r1 back and checks it did.
"""
from __future__ import annotations

import copy
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import pytest
from harness import Lab

COLLECTIONS = Path(__file__).resolve().parents[2] / ".build" / "collections"
ANSIBLE = str(Path(sys.executable).parent / "ansible")
CONF_DIR = "/etc/iproute2/rt_tables.d"
TABLES = ("101", "102", "106", "150")  # every table these tests touch
CONFS = ("isp1", "v6only", "vpn")
# Everything the module could change: all routes, all rules, the rt_tables tree (as r1 sees it).
SNAPSHOT = ("for f in -4 -6; do ip -d $f route show table all; ip -d $f rule show; done; "
            'for f in $(find /etc/iproute2 | sort); do echo "== $f"; [ -f "$f" ] && cat "$f"; done; true')

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


class Router:
    """r1 as these tests see it: ip, the module through Ansible, and snapshots."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.netns = f"{lab.name}-r1"

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.lab.run("r1", ["ip", *args], check=check)

    def module(self, args: Dict, check: bool = False, diff: bool = False) -> Tuple[dict, str]:
        """Run netops.multihome.policy_route_table through ansible; (result, full output)."""
        argv = ["env", f"ANSIBLE_COLLECTIONS_PATH={COLLECTIONS}", "ANSIBLE_NOCOLOR=1",
                "ANSIBLE_FORCE_COLOR=0", "ANSIBLE_STDOUT_CALLBACK=minimal",
                ANSIBLE, "localhost", "-c", "local", "-i", "localhost,",
                "-e", "ansible_python_interpreter=/usr/bin/python3",
                "-m", "netops.multihome.policy_route_table", "-a", json.dumps(args)]
        argv += ["--check"] if check else []
        argv += ["--diff"] if diff else []
        proc = self.lab.run("r1", argv, check=False)
        out = proc.stdout
        marker = out.find("localhost | ")
        if marker < 0:
            raise AssertionError(f"no module result in output:\n{out}\n{proc.stderr}")
        status, body = out[marker:].split(" => ", 1)
        result = json.loads(body)
        # ansible-core 2.19's minimal callback shows failure in the status word only
        result["failed"] = "FAILED" in status
        return result, out

    def conf(self, name: str) -> Optional[str]:
        proc = self.lab.run("r1", ["cat", f"{CONF_DIR}/{name}.conf"], check=False)
        return proc.stdout if proc.returncode == 0 else None

    def snapshot(self) -> str:
        return self.lab.run("r1", ["sh", "-c", SNAPSHOT]).stdout

    def playbook(self, tasks: List[dict], tmp: Path) -> None:
        (tmp / "play.yml").write_text(json.dumps([{"hosts": "localhost", "gather_facts": False,
                                                   "tasks": tasks}]))
        self.lab.run("r1", ["env", f"ANSIBLE_COLLECTIONS_PATH={COLLECTIONS}", "ANSIBLE_NOCOLOR=1",
                            f"{ANSIBLE}-playbook", "-i", "localhost,", "-c", "local",
                            "-e", "ansible_python_interpreter=/usr/bin/python3", str(tmp / "play.yml")])

    def raw(self, *args: str) -> subprocess.CompletedProcess:
        """ip in r1's network namespace but with the host's /etc, so tables show as ids."""
        return subprocess.run(["ip", "-n", self.netns, *args], capture_output=True, text=True, timeout=30)

    def routes(self, fam: str, table: str) -> List[str]:
        out = self.raw(fam, "route", "show", "table", table).stdout
        return [line.strip() for line in out.splitlines() if line.strip()]

    def rules(self, fam: str) -> List[str]:
        return [" ".join(line.split()) for line in self.raw(fam, "rule", "show").stdout.splitlines()]

    def reset(self) -> None:
        """Undo what any test here did: their tables, rules, files and one main route."""
        for fam in ("-4", "-6"):
            for rule in json.loads(self.ip("-j", fam, "rule", "show").stdout):
                if rule["priority"] not in (0, 32766, 32767):
                    self.ip(fam, "rule", "del", "priority", str(rule["priority"]))
            for table in TABLES:
                self.ip(fam, "route", "flush", "table", table, check=False)
        self.ip("route", "del", "192.0.2.0/24", "dev", "wan2", check=False)
        self.lab.run("r1", ["rm", "-f", *(f"{CONF_DIR}/{n}.conf" for n in CONFS)])


class Monitor:
    """``ip monitor route rule`` in r1, fenced by marker routes so nothing is missed."""

    MARK = ("192.0.2.254/32", "999")

    def __init__(self, router: Router) -> None:
        self.router = router
        self.lines: List[str] = []
        self.proc = subprocess.Popen(["ip", "-n", router.netns, "monitor", "route", "rule"],
                                     stdout=subprocess.PIPE, text=True)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def _wait_for(self, needle: str, start: int) -> int:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for i in range(start, len(self.lines)):
                if needle in self.lines[i]:
                    return i
            time.sleep(0.02)
        raise AssertionError(f"ip monitor never showed {needle!r}: {self.lines}")

    def __enter__(self) -> Monitor:
        dst, table = self.MARK
        # repeat the opening marker until the monitor sees it: then it is surely listening
        deadline = time.monotonic() + 10
        while True:
            if time.monotonic() > deadline:
                raise AssertionError("ip monitor did not start")
            self.router.ip("route", "add", dst, "dev", "lo", "table", table)
            time.sleep(0.1)
            if any("192.0.2.254" in line for line in self.lines):
                break
            self.router.ip("route", "del", dst, "dev", "lo", "table", table)
        time.sleep(0.2)
        self.start = len(self.lines)
        return self

    def __exit__(self, *exc: object) -> None:
        dst, table = self.MARK
        self.router.ip("route", "del", dst, "dev", "lo", "table", table)
        end = self._wait_for("Deleted 192.0.2.254", self.start)
        self.events = [e for e in self.lines[self.start:end] if "192.0.2.254" not in e]
        self.proc.terminate()
        self.proc.wait(timeout=5)


@pytest.fixture(scope="module")
def pristine(lab: Lab) -> str:
    return Router(lab).snapshot()


@pytest.fixture
def router(lab: Lab, pristine: str) -> Iterator[Router]:
    r = Router(lab)
    assert r.snapshot() == pristine, "r1 is not the plain lab router"
    yield r
    r.reset()
    assert r.snapshot() == pristine, "the test left something behind on r1"


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
    assert isp1.conf("isp1").endswith("101\tisp1\n")
    # the name resolves for iproute2 inside the router (its own /etc), not on the host
    assert "default via 198.51.100.1 dev wan1" in isp1.ip("route", "show", "table", "isp1").stdout
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
    assert isp1.conf("isp1") is None
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
    router.lab.run("r1", ["sh", "-c", f"mkdir -p {CONF_DIR} && printf '150\\tvpn\\n' > {CONF_DIR}/vpn.conf"])
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


def test_bad_inputs_fail_before_any_change(isp1: Router, tmp_path: Path) -> None:
    """All cases in one playbook (Ansible's start-up dominates the run time). The kernel
    must not change at all, not even for an instant (ip monitor over the whole run), and
    r1's routes, rules and rt_tables tree must be byte-identical afterwards."""
    _other_table(isp1)
    before = isp1.snapshot()
    tasks = []
    for i, (_, override, _) in enumerate(BAD_INPUTS):
        params = copy.deepcopy(ISP1)
        params["routes"] = [params["routes"][0], *params["routes"][2:3]]
        params.update(override)
        tasks.append({"netops.multihome.policy_route_table": params, "register": f"r{i}",
                      "ignore_errors": True})
    report = "{{ [" + ", ".join(f"r{i}" for i in range(len(BAD_INPUTS))) + "] | to_json }}"
    tasks.append({"copy": {"content": report, "dest": str(tmp_path / "report.json")}})
    with Monitor(isp1) as mon:
        isp1.playbook(tasks, tmp_path)
    results = json.loads((tmp_path / "report.json").read_text())
    failures = [(case, result.get("msg"), result.get("commands"))
                for (case, _, message), result in zip(BAD_INPUTS, results)
                if not (result.get("failed") and message in result.get("msg", ""))]
    assert failures == []
    assert mon.events == []
    assert isp1.snapshot() == before
    assert len(results) == len(BAD_INPUTS) >= 10
