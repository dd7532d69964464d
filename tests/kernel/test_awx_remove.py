"""The "multihome remove" job template (issue 15): playbooks/remove.yml run the way AWX runs
it (ansible-runner in the private data dir of test_awx_runner, survey answers as extra vars)
on the lab's r1, converged by site.yml with each balancing backend.

The administrator's own nft table, iptables rule, policy rule and route are added before the
first converge. Without the confirmation, or naming a router the job does not have, the job
fails naming the variable before any router changes; with them it leaves r1 as the
administrator had it, and running it again changes nothing. The job's inventory also holds
r9, a router the survey does not name and that cannot be reached: it must be left alone
(never even connected to)."""
from __future__ import annotations

import json
import os
import re

import pytest
import test_awx_runner
import yaml
from harness import wait_for
from test_awx_operations import job
from test_uplink_absent_and_repair import ADMIN_STATE, admin_snapshot

PLAYBOOK = "playbooks/remove.yml"
CONFIRMED = {"multihome_remove_routers": "r1", "multihome_remove_confirm": "remove"}
# Everything the role puts on a router outside the kernel (monitor.yml, install.yml, operability.yml).
OUR_PATHS = ("/etc/netops-multihome", "/usr/local/lib/netops-multihome", "/usr/local/sbin/multihome",
             "/etc/sysctl.d/90-netops-multihome.conf", "/var/lib/netops-multihome", "/run/netops-multihome",
             "/var/log/netops-multihome", "/etc/systemd/system/netops-multihome-monitor.service",
             "/etc/systemd/system/netops-multihome-restore.service",
             "/var/lib/prometheus/node-exporter/multihome.prom")


@pytest.fixture(scope="module")
def job_dir(lab, private_data_dir):
    """test_awx_runner's private data dir, its inventory holding one more router, r9."""
    r9 = {"ansible_host": "127.0.0.1", "ansible_port": 9}  # nothing listens: a connection would fail
    unnamed = {"all": {"children": {"routers": {"hosts": {"r9": r9}}}}}
    (private_data_dir / "inventory" / "unnamed.yml").write_text(yaml.safe_dump(unnamed))
    return private_data_dir


private_data_dir = test_awx_runner.private_data_dir


# A line of a table that holds nothing: iptables-nft leaves its tables' built-in chains, empty
# and accepting, once our NETOPS_MH_* chains and their jumps are gone (iptables shows them either way).
NOTHING = re.compile(r"\s*(?:table ip6? \w+ \{|chain [A-Z]+ \{|\}"
                     r"|type \w+ hook \w+ priority [\w +-]+; policy accept;)?\s*")


def admin_state(lab) -> dict:
    """admin_snapshot() without the nft tables that hold nothing."""
    state = admin_snapshot(lab)
    tables = re.split(r"(?m)^(?=table )", state["nft"])
    state["nft"] = "".join(t for t in tables if not all(NOTHING.fullmatch(x) for x in t.splitlines()))
    return state


@pytest.fixture(scope="module")
def admin_before(lab) -> dict:
    for argv in ADMIN_STATE:
        lab.run("r1", argv)
    return admin_state(lab)


@pytest.fixture(scope="module", params=["nftables", "iptables"])
def converged(request, lab, admin_before):
    done = lab.playbook("-e", f"multihome_backend={request.param}")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    return request.param


def snapshot(lab) -> dict:
    """lab.snapshot() without the packet counters (the iptables backend's rules count the
    monitor's probes, which keep flowing while the job runs)."""
    return {key: re.sub(r"counter packets \d+ bytes \d+|\[\d+:\d+\]", "counter", text)
            for key, text in lab.snapshot().items()}


def exists(lab, path: str) -> bool:
    return lab.run("r1", ["test", "-e", path], check=False).returncode == 0


def owned_tables(lab) -> list:
    """The routing table ids the router's saved model owns (uplinks and its own traffic)."""
    model = json.loads(lab.run("r1", ["cat", "/etc/netops-multihome/model.json"]).stdout)
    return [str(t["id"]) for t in model["routing"]] + [str(model["own_traffic"]["table"])]


@pytest.mark.parametrize(("answers", "message"), [
    ({"multihome_remove_routers": "r1"},
     'multihome_remove_confirm="" (allowed: "remove", typed to confirm the removal)'),
    ({"multihome_remove_routers": "r1", "multihome_remove_confirm": "yes"},
     'multihome_remove_confirm="yes" (allowed: "remove", typed to confirm the removal)'),
    ({"multihome_remove_confirm": "remove"},
     'multihome_remove_routers="" (allowed: names of routers of this job: r1, r9)'),
    ({"multihome_remove_routers": "r1,r2", "multihome_remove_confirm": "remove"},
     'multihome_remove_routers="r1,r2" (allowed: names of routers of this job: r1, r9)'),
], ids=["no-confirmation", "wrong-confirmation", "no-routers", "unknown-router"])
def test_remove_job_without_confirmation_fails_naming_the_variable_and_changes_nothing(
        lab, converged, job_dir, answers, message) -> None:
    before = snapshot(lab)
    assert ("table inet netops_multihome" in before["nft"] if converged == "nftables"
            else "NETOPS_MH_" in before["iptables"]), before
    run = job(job_dir, PLAYBOOK, **answers)
    out = run.stdout.read()
    assert run.status == "failed" and message in out, out[-3000:]
    assert not run.stats["changed"] and not run.stats["dark"], run.stats
    assert snapshot(lab) == before
    assert exists(lab, "/run/netops-multihome/monitor.pid")


def test_remove_job_leaves_only_the_admins_state_and_a_rerun_changes_nothing(
        lab, converged, admin_before, job_dir) -> None:
    tables = owned_tables(lab)
    ours = [p for p in OUR_PATHS if exists(lab, p)]
    assert {"/etc/netops-multihome", "/usr/local/sbin/multihome", "/run/netops-multihome"} <= set(ours), ours
    monitor = lab.run("r1", ["cat", "/run/netops-multihome/monitor.pid"]).stdout.split()
    pids = monitor + lab.run("r1", ["ps", "-o", "pid=", "--ppid", monitor[0]]).stdout.split()
    assert len(pids) >= 3, pids  # the monitor, ip monitor and one LSM per uplink

    run = job(job_dir, PLAYBOOK, **CONFIRMED)
    assert run.status == "successful", run.stdout.read()[-4000:]
    assert run.stats["changed"].get("r1", 0) > 0, run.stats
    assert "r9" not in run.stats["changed"] and not run.stats["dark"] and not run.stats["failures"], run.stats

    assert "netops_multihome" not in lab.run("r1", ["nft", "list", "tables"]).stdout
    saved = lab.run("r1", ["sh", "-c", "iptables-save; ip6tables-save"]).stdout
    assert "NETOPS_MH_" not in saved, saved
    for fam in ("-4", "-6"):
        rules = lab.run("r1", ["ip", fam, "rule"]).stdout
        assert "mh_" not in rules and not any(f"lookup {t}\n" in rules + "\n" for t in tables), rules
        routes = lab.run("r1", ["ip", fam, "route", "show", "table", "all"]).stdout.splitlines()
        assert not [r for r in routes if any(f" table {t} " in f"{r} " for t in tables)], routes
    assert "mh_" not in lab.run("r1", ["ls", "/etc/iproute2/rt_tables.d"]).stdout
    assert [p for p in ours if exists(lab, p)] == []
    assert wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in pids), 5), pids
    assert admin_state(lab) == admin_before

    again = job(job_dir, PLAYBOOK, **CONFIRMED)
    assert again.status == "successful", again.stdout.read()[-4000:]
    assert again.stats["changed"].get("r1", 0) == 0 and again.stats["ok"].get("r1", 0) > 0, again.stats
    assert admin_state(lab) == admin_before
