"""The repository as an AWX project: a job template running playbooks/site.yml.

AWX clones the project, installs `collections/requirements.yml` into the job's private data
dir (with the project root as working directory), then runs the playbook with ansible-runner
using the job's inventory and extra vars. This test does the same against the lab's router,
twice: the second run must change nothing. The extra var (a survey answer in AWX) must reach
the role: with `source_hash` every flow of one client takes the same ISP.
"""
from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import ansible_runner
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PLAYBOOK = "playbooks/site.yml"
ISP1, ISP2 = "198.51.100.2", "198.51.100.6"
# AWX offers a file as a playbook when it holds a play: a top-level `- hosts:` (or import).
AWX_PLAY_LINE = re.compile(r"^\s*-?\s*(?:hosts|import_playbook|include):\s*.*?$", re.MULTILINE)


def clone_project(dest: Path) -> None:
    """What an SCM project update leaves: the git-tracked files."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for rel in filter(None, files.decode().split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="module")
def private_data_dir(lab, tmp_path_factory) -> Path:
    pdd = tmp_path_factory.mktemp("awx-job")
    project = pdd / "project"
    clone_project(project)

    # Project sync: collections/requirements.yml, run from the project root as AWX does.
    # Only the job's own path counts, not a copy someone installed under ~/.ansible.
    collections_dir = pdd / "requirements_collections"
    env = dict(clean_env(), ANSIBLE_COLLECTIONS_PATH=str(collections_dir),
               ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="False")
    sync = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", "-r",
                           "collections/requirements.yml", "-p", str(collections_dir)],
                          cwd=project, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert sync.returncode == 0, sync.stdout + sync.stderr
    assert (collections_dir / "ansible_collections/netops/multihome/roles/multihome/tasks/main.yml").is_file()

    shutil.copytree(lab.inventory, pdd / "inventory")
    (pdd / "env").mkdir()
    (pdd / "env" / "extravars").write_text(yaml.safe_dump({"multihome_balance_mode": "source_hash"}))
    (pdd / "env" / "envvars").write_text(yaml.safe_dump({
        "ANSIBLE_COLLECTIONS_PATH": str(collections_dir),
        "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "False",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "PATH": clean_env()["PATH"],
    }))
    return pdd


def job(pdd: Path) -> ansible_runner.Runner:
    return ansible_runner.run(private_data_dir=str(pdd), playbook=PLAYBOOK, quiet=True,
                              envvars=None, timeout=600)


def test_site_yml_is_offered_as_a_playbook() -> None:
    text = (ROOT / PLAYBOOK).read_text()
    assert AWX_PLAY_LINE.search(text)
    plays = yaml.safe_load(text)
    assert all("hosts" in play for play in plays)
    requirements = yaml.safe_load((ROOT / "collections" / "requirements.yml").read_text())
    assert any(c["name"] == "netops.multihome" for c in requirements["collections"])


def test_job_template_run_twice_second_changes_nothing(private_data_dir, lab) -> None:
    first = job(private_data_dir)
    assert first.status == "successful", first.stdout.read()[-4000:]
    assert first.stats["changed"].get("r1", 0) > 0, first.stats
    assert not first.stats["failures"] and not first.stats["dark"], first.stats

    # The survey's extra var reached the role: one client, one ISP, every flow.
    seen = collections.Counter(lab.flows("c1", 12))
    assert len(seen) == 1 and set(seen) <= {ISP1, ISP2}, seen

    second = job(private_data_dir)
    assert second.status == "successful", second.stdout.read()[-4000:]
    assert second.stats["changed"].get("r1", 0) == 0, second.stats
    assert second.stats["ok"].get("r1", 0) > 0, second.stats
