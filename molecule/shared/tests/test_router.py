"""The converged router as testinfra sees it over SSH: packages, files, kernel settings,
routing, the ruleset, the monitor and LSM, and what `multihome status --json` reports.
Expected values come from the router's inventory (its uplinks and LANs)."""
from __future__ import annotations

import json

import pytest

STATE_DIRS = {"/etc/netops-multihome": 0o700, "/var/lib/netops-multihome/state": 0o700,
              "/var/log/netops-multihome": 0o750}
FILES = {"/etc/netops-multihome/model.json": 0o600, "/etc/netops-multihome/lsm.conf": 0o600,
         "/etc/sysctl.d/90-netops-multihome.conf": 0o644, "/usr/local/sbin/multihome": 0o755,
         "/usr/local/lib/netops-multihome/multihome-hook": 0o755,
         "/usr/local/lib/netops-multihome/engine/__init__.py": 0o644}


@pytest.fixture(scope="module")
def inventory(host) -> dict:
    return host.ansible.get_variables()


@pytest.fixture(scope="module")
def status(host) -> dict:
    return json.loads(host.check_output("/usr/local/sbin/multihome status --json"))


def test_router_packages_are_installed(host, status) -> None:
    backend_package = "nftables" if status["backend"] == "nftables" else "iptables"
    for name in ("iproute2", "conntrack", "python3", backend_package):
        assert host.package(name).is_installed, name
    # LSM 1.0.4 on Debian 12, its successor foolsm 1.0.21 on Debian 13.
    assert host.package("lsm").is_installed or host.package("foolsm").is_installed


def test_directories_and_files_are_root_owned_with_their_modes(host) -> None:
    for path, mode in {**STATE_DIRS, **FILES}.items():
        item = host.file(path)
        assert item.exists, path
        assert (item.user, item.group, item.mode) == ("root", "root", mode), (path, oct(item.mode))
    for path in STATE_DIRS:
        assert host.file(path).is_directory, path


def test_forwarding_rp_filter_and_src_valid_mark_are_in_force(host, inventory) -> None:
    assert host.sysctl("net.ipv4.ip_forward") == 1
    assert host.sysctl("net.ipv6.conf.all.forwarding") == 1
    assert host.sysctl("net.ipv4.conf.all.src_valid_mark") == 1
    for uplink in inventory["multihome_uplinks"]:
        assert host.sysctl(f"net.ipv4.conf.{uplink['interface']}.rp_filter") == 2, uplink["interface"]
    for lan in inventory["multihome_lans"]:
        assert host.sysctl(f"net.ipv4.conf.{lan['interface']}.rp_filter") == 1, lan["interface"]


def test_each_uplink_has_its_table_default_route_and_policy_rules(host, inventory, status) -> None:
    rules = host.check_output("ip -4 rule show")
    marks = {u["name"]: u["mark"] for u in status["uplinks"]}
    for uplink in inventory["multihome_uplinks"]:
        name, table = uplink["name"], f"mh_{uplink['name']}"
        address = uplink["address"].split("/")[0]
        assert f"from {address} lookup {table}" in rules, (name, rules)
        assert f"fwmark {marks[name]}/0xff00 lookup {table}" in rules, (name, rules)
        assert f"oif {uplink['interface']} lookup {table}" in rules, (name, rules)
        routes = host.check_output(f"ip -4 route show table {table}")
        assert f"default via {uplink['gateway']} dev {uplink['interface']}" in routes, (name, routes)
        routes6 = host.check_output(f"ip -6 route show table {table}")
        assert f"default via {uplink['gateway6']} dev {uplink['interface']}" in routes6, (name, routes6)


def test_ruleset_marks_each_uplink_and_is_in_sync(host, status) -> None:
    assert status["ruleset_in_sync"] is True
    if status["backend"] == "nftables":
        ruleset, spelling = host.check_output("nft list table inet netops_multihome"), "{:#010x}"
    else:
        ruleset, spelling = host.check_output("iptables-save -t mangle"), "{:#x}/0xff00"
    for uplink in status["uplinks"]:
        mark = spelling.format(int(uplink["mark"], 16))
        assert mark in ruleset, (uplink["name"], mark, ruleset)


def test_monitor_runs_in_this_router_with_one_lsm_per_uplink(host, inventory) -> None:
    # The lab's routers share the machine's PID namespace: find the monitor by its pidfile and
    # check it is this router's (same network namespace), then LSM among its children.
    pid = host.file("/run/netops-multihome/monitor.pid").content_string.strip()
    own_netns = host.check_output("readlink /proc/self/ns/net")
    assert host.check_output(f"readlink /proc/{pid}/ns/net") == own_netns
    assert "multihome monitor" in host.check_output(f"ps -o args= -p {pid}")
    children = host.check_output(f"ps -o args= --ppid {pid}").splitlines()
    # The monitor runs the installed LSM by its path: /usr/sbin/lsm (Debian 12) or foolsm (13).
    lsm = sorted(line for line in children if line.split()[0].rsplit("/", 1)[-1] in ("lsm", "foolsm"))
    assert len(lsm) == len(inventory["multihome_uplinks"]), children
    for uplink in inventory["multihome_uplinks"]:
        assert any(f"lsm-{uplink['name']}.conf" in line for line in lsm), (uplink["name"], lsm)


def test_status_json_lists_every_uplink_up_with_its_interface_and_weight(status, inventory) -> None:
    expected = [(u["name"], u["interface"], u["weight"], "up") for u in inventory["multihome_uplinks"]]
    seen = [(u["name"], u["interface"], u["weight"], u["state"]) for u in status["uplinks"]]
    assert sorted(seen) == sorted(expected)
    assert status["failover"] is True
