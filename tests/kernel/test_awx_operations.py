"""The operations job templates (issue 15) run the way AWX runs them: ansible-runner in a
private data dir holding the project clone, its collections and the lab's inventory, with
the survey's answers as extra vars. playbooks/status.yml (fleet report, failing uplinks
first) and playbooks/drain.yml (drain/undrain one uplink) on the lab's router."""
from __future__ import annotations

import json
from pathlib import Path

import ansible_runner
import pytest
import test_awx_runner
from harness import wait_for
from test_awx_runner import AWX_PLAY_LINE, ROOT

# The private data dir of test_awx_runner (project clone, its collections, the lab's inventory)
job_dir = test_awx_runner.private_data_dir
SURVEYS = {"playbooks/status.yml": "playbooks/surveys/status.json",
           "playbooks/drain.yml": "playbooks/surveys/drain.json",
           "playbooks/remove.yml": "playbooks/surveys/remove.json"}


@pytest.fixture(scope="module")
def converged(lab):
    done = lab.playbook()
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert wait_for(lambda: "probe=up" in lab.run(
        "r1", ["cat", "/var/lib/netops-multihome/state/isp2"], check=False).stdout, 10)
    return lab


def job(pdd: Path, playbook: str, limit: str = "", **survey) -> ansible_runner.Runner:
    """Run PLAYBOOK as an AWX job template does: survey answers as extra vars, LIMIT as the
    template's Limit."""
    return ansible_runner.run(private_data_dir=str(pdd), playbook=playbook, quiet=True,
                              extravars=survey, limit=limit or None, timeout=600)


def uplink(lab, name: str) -> dict:
    data = json.loads(lab.run("r1", ["multihome", "status", "--json"]).stdout)
    return next(u for u in data["uplinks"] if u["name"] == name)


@pytest.mark.parametrize("playbook", sorted(SURVEYS))
def test_operations_playbook_is_offered_with_a_survey_naming_only_its_variables(playbook) -> None:
    text = (ROOT / playbook).read_text()
    assert AWX_PLAY_LINE.search(text)
    survey = json.loads((ROOT / SURVEYS[playbook]).read_text())
    assert survey["name"] and survey["spec"]
    for question in survey["spec"]:
        assert question["variable"] in text and question["type"] in ("text", "multiplechoice")


def test_status_job_with_a_limit_reports_the_router_with_its_failing_uplink_first(converged, job_dir) -> None:
    lab = converged
    report_path = job_dir / "fleet-report.json"
    lab.carrier_down("isp1")
    try:
        assert wait_for(lambda: uplink(lab, "isp1")["reason"] == "carrier", 5)
        run = job(job_dir, "playbooks/status.yml", limit="r1", multihome_report_path=str(report_path))
        assert run.status == "successful", run.stdout.read()[-4000:]
    finally:
        lab.carrier_up("isp1")
    assert run.stats["changed"].get("r1", 0) == 0, run.stats
    report = json.loads(report_path.read_text())
    assert (report["routers"], report["uplinks_not_up"]) == (1, 1)
    first, second = report["uplinks"]
    keys = ("router", "name", "state", "reason")
    assert [first[k] for k in keys] == ["r1", "isp1", "down", "carrier"]
    assert [second[k] for k in keys] == ["r1", "isp2", "up", "ok"]
    assert wait_for(lambda: uplink(lab, "isp1")["state"] == "up", 10)


def test_drain_job_drains_once_changes_nothing_when_repeated_and_undrains(
        converged, job_dir) -> None:
    lab = converged
    try:
        first = job(job_dir, "playbooks/drain.yml", multihome_drain_uplink="isp2",
                    multihome_drain_action="drain")
        assert first.status == "successful", first.stdout.read()[-3000:]
        assert first.stats["changed"].get("r1") == 1, first.stats
        assert uplink(lab, "isp2")["drained"] is True
        again = job(job_dir, "playbooks/drain.yml", multihome_drain_uplink="isp2",
                    multihome_drain_action="drain")
        assert again.status == "successful" and again.stats["changed"].get("r1", 0) == 0, again.stats
    finally:
        back = job(job_dir, "playbooks/drain.yml", multihome_drain_uplink="isp2",
                   multihome_drain_action="undrain")
    assert back.status == "successful" and back.stats["changed"].get("r1") == 1, back.stdout.read()[-3000:]
    assert uplink(lab, "isp2")["drained"] is False


@pytest.mark.parametrize(("answers", "message"), [
    ({"multihome_drain_uplink": "isp9"},
     "multihome_drain_uplink=isp9 is not an uplink of r1 (its uplinks: isp1, isp2)"),
    ({"multihome_drain_uplink": "isp1", "multihome_drain_action": "reboot"},
     'multihome_drain_action="reboot" (allowed: drain, undrain)'),
])
def test_drain_job_refuses_a_bad_survey_answer_by_name_and_changes_nothing(
        converged, job_dir, answers, message) -> None:
    run = job(job_dir, "playbooks/drain.yml", **answers)
    out = run.stdout.read()
    assert run.status == "failed" and message in out, out[-3000:]
    assert run.stats["changed"].get("r1", 0) == 0
    assert uplink(converged, "isp1")["drained"] is False
