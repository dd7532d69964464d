"""The collection as users get it: `ansible-galaxy collection build`, install the tarball into
an empty collections path, run the *installed* `netops.multihome.site` playbook against the
lab's router, and see the router balance real flows over both ISPs.

Nothing from the repository is visible to the run: the working directory is a temp dir and
ANSIBLE_COLLECTIONS_PATH holds only the installed copy.
"""
from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ISP1, ISP2 = "198.51.100.2", "198.51.100.6"

MUST_SHIP = [
    "MANIFEST.json",
    "FILES.json",
    "meta/runtime.yml",
    "playbooks/site.yml",
    "plugins/modules/policy_route_table.py",
    "plugins/modules/conntrack_balance.py",
    "plugins/module_utils/engine/__init__.py",
    "plugins/module_utils/engine/ruleset/apply.py",
    "plugins/module_utils/engine/routing/table.py",
    "router/cli.py",
    "router/hook.py",
    "roles/multihome/meta/argument_specs.yml",
    "roles/multihome/tasks/main.yml",
    "roles/multihome/defaults/main.yml",
    "roles/multihome/files/multihome",
    "roles/multihome/files/multihome-hook",
    "roles/multihome/README.md",
]
MUST_NOT_SHIP = ("lab/", "bench/", "molecule/", "tests/kernel/", "tests/harness/", ".build/",
                 ".venv/", ".git/", ".ci/", "__pycache__", ".pytest_cache", ".ruff_cache")


def run(argv, cwd: Path, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def isolated_env(collections_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(collections_path), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="False",
               ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="False")
    return env


@pytest.fixture(scope="module")
def tarball(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    proc = run([BIN / "ansible-galaxy", "collection", "build", "--output-path", out, ROOT], ROOT,
               isolated_env(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (path,) = out.glob("netops-multihome-*.tar.gz")
    return path


@pytest.fixture(scope="module")
def installed(tarball, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("collections")
    proc = run([BIN / "ansible-galaxy", "collection", "install", "-p", path, tarball], path,
               isolated_env(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return path


def test_tarball_carries_engine_hook_cli_and_role_but_no_dev_tooling(tarball) -> None:
    with tarfile.open(tarball) as tar:
        names = {m.name.removeprefix("./") for m in tar.getmembers() if m.isfile()}
    missing = [n for n in MUST_SHIP if n not in names]
    assert not missing, f"missing from the tarball: {missing}"
    leaked = sorted(n for n in names if any(n.startswith(p) or p in n for p in MUST_NOT_SHIP))
    assert not leaked, f"dev tooling in the tarball: {leaked}"
    engine = {n for n in names if n.startswith(("plugins/module_utils/engine/", "router/"))}
    in_repo = {str(p.relative_to(ROOT)) for top in ("plugins/module_utils/engine", "router")
               for p in (ROOT / top).rglob("*.py")}
    assert in_repo <= engine, f"engine files not shipped: {sorted(in_repo - engine)}"


def test_installed_collection_documents_its_modules(installed) -> None:
    for module in ("policy_route_table", "conntrack_balance"):
        proc = run([BIN / "ansible-doc", f"netops.multihome.{module}"], installed, isolated_env(installed))
        assert proc.returncode == 0, proc.stderr
        assert "EXAMPLES:" in proc.stdout and "RETURN VALUES:" in proc.stdout
        assert str(installed) in proc.stdout, "ansible-doc did not read the installed copy"


def test_site_yml_from_installed_collection_makes_a_multihomed_router(installed, lab, tmp_path) -> None:
    env = isolated_env(installed)
    # FQCN playbook: resolved from the installed collection only.
    proc = run([BIN / "ansible-playbook", "-i", lab.inventory, "netops.multihome.site"], tmp_path, env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    recap = re.search(r"r1\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0", proc.stdout)
    assert recap and int(recap.group(1)) > 0, proc.stdout[-3000:]
    # The roles path the play used is the installed one, not the repository.
    assert str(ROOT) not in proc.stdout

    # What the tarball brought is on the router and runs there: the CLI over the engine and the hook.
    lab.run("r1", ["test", "-x", "/usr/local/lib/netops-multihome/multihome-hook"])
    lab.run("r1", ["test", "-f", "/usr/local/lib/netops-multihome/engine/ruleset/apply.py"])
    assert "isp1" in lab.run("r1", ["multihome", "status"]).stdout

    # And the router balances real flows from a LAN client over both ISPs.
    seen = collections.Counter(lab.flows("c1", 20))
    assert set(seen) == {ISP1, ISP2}, seen
