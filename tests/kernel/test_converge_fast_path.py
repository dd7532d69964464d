"""The fast path of playbooks/site.yml on the lab's router r1 (roles/multihome/tasks/fast_path.yml,
router/converged.py): a router exactly as the last complete converge left it is not converged
again and reports no change; every kind of drift (a hand-edited file, a deleted rule, a stopped
monitor, a changed variable) is still repaired by the next run, and check mode reports it.

A full converge removes the record first and writes a new one at its end; the fast path leaves
it alone, so the record's inode and mtime tell which path a run took.
"""
from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml

RECORD = "/var/lib/netops-multihome/converged.json"
SYSCTL_CONF = "/etc/sysctl.d/90-netops-multihome.conf"


def recap(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    found = re.search(r"^r1\s*:\s*((?:\w+=\d+\s*)+)$", proc.stdout.split("PLAY RECAP", 1)[-1], re.M)
    assert found, proc.stdout[-3000:]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", found.group(1))}


def record_stamp(lab) -> str:
    """inode and mtime of the record, '' when there is none."""
    return lab.run("r1", ["stat", "-c", "%i %Y.%y", RECORD], check=False).stdout.strip()


def fwmark_rule(lab, uplink: str) -> list:
    """`ip rule` arguments of UPLINK's fwmark rule, from the model saved on the router."""
    model = json.loads(lab.run("r1", ["cat", "/etc/netops-multihome/model.json"]).stdout)
    table = next(t for t in model["routing"] if t["name"] in (uplink, f"mh_{uplink}"))
    rule = next(r for r in table["rules"] if r.get("fwmark") is not None and r.get("family") == "ipv4")
    return ["priority", str(rule["priority"]), "fwmark", f"{int(rule['fwmark']):#x}/{int(rule['fwmask']):#x}",
            "table", str(table["id"])]


def has_rule(lab, spec: list) -> bool:
    wanted = f"{spec[1]}:\tfrom all fwmark {spec[3]} lookup "
    return wanted in lab.run("r1", ["ip", "rule", "show"]).stdout


def choose_chain(lab) -> str:
    return lab.run("r1", ["nft", "list", "chain", "inet", "netops_multihome", "choose"]).stdout


@pytest.fixture(scope="module")
def converged(lab):
    assert recap(lab.playbook())["changed"] > 0
    assert record_stamp(lab)
    return lab


def test_a_rerun_with_nothing_to_change_changes_nothing_and_takes_the_fast_path(converged) -> None:
    before = record_stamp(converged)
    assert recap(converged.playbook())["changed"] == 0
    assert record_stamp(converged) == before


def test_check_mode_on_a_router_in_sync_reports_no_change_and_keeps_the_record(converged) -> None:
    before = record_stamp(converged)
    assert recap(converged.playbook("--check", "--diff"))["changed"] == 0
    assert record_stamp(converged) == before


def test_a_deleted_rule_is_reported_by_check_mode_and_repaired_by_the_next_run(converged) -> None:
    lab = converged
    spec = fwmark_rule(lab, "isp1")
    assert has_rule(lab, spec)
    lab.run("r1", ["ip", "rule", "del", *spec])
    checked = lab.playbook("--check", "--diff")
    assert recap(checked)["changed"] > 0
    assert f"fwmark {spec[3]}" in checked.stdout and not has_rule(lab, spec)
    assert recap(lab.playbook())["changed"] > 0
    assert has_rule(lab, spec)
    assert recap(lab.playbook())["changed"] == 0


def test_a_hand_edited_managed_file_is_put_back(converged) -> None:
    lab = converged
    original = lab.run("r1", ["cat", SYSCTL_CONF]).stdout
    lab.run("r1", ["sh", "-c", f"echo net.ipv4.ip_forward=0 >> {SYSCTL_CONF}"])
    assert recap(lab.playbook())["changed"] > 0
    assert lab.run("r1", ["cat", SYSCTL_CONF]).stdout == original


def test_a_stopped_monitor_is_started_again(converged) -> None:
    lab = converged
    lab.run("r1", ["multihome", "monitor", "--stop"])
    assert lab.run("r1", ["multihome", "monitor", "--status"], check=False).returncode != 0
    assert recap(lab.playbook())["changed"] > 0
    assert json.loads(lab.run("r1", ["multihome", "monitor", "--verify", "--wait", "20"]).stdout)["ok"]


def test_a_changed_variable_is_applied_and_changing_it_back_too(converged, tmp_path) -> None:
    lab = converged
    host_vars = yaml.safe_load((lab.inventory / "host_vars" / "r1.yml").read_text())
    assert "mod 2" in choose_chain(lab)
    host_vars["multihome_uplinks"][0]["weight"] = 2
    heavier = tmp_path / "weight.yml"
    heavier.write_text(yaml.safe_dump({"multihome_uplinks": host_vars["multihome_uplinks"]}))
    assert recap(lab.playbook("-e", f"@{heavier}"))["changed"] > 0
    assert "mod 3" in choose_chain(lab)
    assert recap(lab.playbook())["changed"] > 0
    assert "mod 2" in choose_chain(lab)
