"""The monitor's failover applies skip listing the table while nobody else has committed.

A process running in the router's namespace (``LocalRunner``) reads the nftables ruleset
generation over netlink; after its own commit it knows the table it loaded is the kernel's
until the generation moves again. These tests run the engine in a scratch namespace, in a
child process (the generation is read from the caller's own namespace), and check the
kernel fact the shortcut stands on as well as the shortcut itself.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Iterator

import pytest
from harness import lab_name

NS = f"{lab_name('mht')}-gen"
PARAMS = {
    "state": "present", "backend": "nftables", "mode": "round_robin", "mark_mask": 0xFF00,
    "uplinks": [{"name": n, "interface": f"wan{i}", "mark": i << 8, "weight": 1, "tier": 1, "state": "up",
                 "nat": "masquerade", "snat_address": None, "nptv6": None, "source_prefixes": None}
                for i, n in ((1, "isp1"), (2, "isp2"))],
    "lans": [{"name": "lan1", "interfaces": ["lan1"], "prefixes": ["192.168.1.0/24"]}],
    "pins": [], "bypass": [],
}


def nft(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", NS, "nft", *args], input=stdin, text=True,
                          capture_output=True, check=False)


def in_namespace(*steps: str) -> list[dict]:
    """Run STEPS in the namespace, in one process: ``down``/``up`` apply isp1's state as
    the monitor does; ``tamper`` (another process adds an element to a set no failover
    change touches) and ``admin`` (another process commits its own table) happen between
    them. Per apply: whether it listed the table, and whether the kernel then held exactly
    what the engine renders for those states."""
    code = f"import {__name__} as t; t.drive({list(steps)!r})"
    return json.loads(subprocess.run(
        ["ip", "netns", "exec", NS, sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        capture_output=True, text=True, check=True).stdout)


def drive(steps: list[str]) -> None:
    from ansible_collections.netops.multihome.plugins.module_utils.engine.ruleset import nft as backend
    from ansible_collections.netops.multihome.plugins.module_utils.engine.ruleset.apply import (
        apply_policy,
        policy_of,
    )
    from ansible_collections.netops.multihome.plugins.module_utils.engine.ruleset.plan import plan_ruleset
    from ansible_collections.netops.multihome.plugins.module_utils.engine.runner import LocalRunner

    class Recording(LocalRunner):
        def __init__(self) -> None:
            self.argvs: list[list[str]] = []

        def run(self, argv, stdin=None, check=True):
            self.argvs.append(list(argv))
            return super().run(argv, stdin, check)

    out = []
    for step in steps:
        if step == "tamper":
            nft("add", "element", "inet", "netops_multihome", "unbalanced4", "{ 203.0.113.0/24 }")
            continue
        if step == "admin":
            nft("add", "table", "inet", "admin")
            continue
        states = {"isp1": step, "isp2": "up"}
        runner = Recording()
        apply_policy(PARAMS, runner, states=states, other_backend=False)
        kernel = backend.parse_table(nft("list", "table", "inet", "netops_multihome").stdout)
        out.append({"listed": ["nft", "list", "table", "inet", "netops_multihome"] in runner.argvs,
                    "exact": kernel == backend.render_objects(plan_ruleset(policy_of(PARAMS), states))})
    print(json.dumps(out))


@pytest.fixture()
def netns() -> Iterator[None]:
    subprocess.run(["ip", "netns", "add", NS], check=True)
    try:
        yield
    finally:
        subprocess.run(["ip", "netns", "del", NS], check=False)


def test_each_commit_moves_the_generation_by_exactly_one_and_nothing_else_moves_it(netns) -> None:
    from ansible_collections.netops.multihome.plugins.module_utils.engine.ruleset.nft_generation import (
        read_generation,
    )

    code = f"from {read_generation.__module__} import read_generation as g; print(g())"

    def generation() -> int:
        return int(subprocess.run(["ip", "netns", "exec", NS, sys.executable, "-c", code], check=True,
                                  env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
                                  capture_output=True, text=True).stdout)

    start = generation()
    assert nft("-f", "-", stdin="table inet t {\n\tchain c {\n\t}\n}\n").returncode == 0
    assert generation() == start + 1
    one_transaction = "flush chain inet t c\nadd rule inet t c accept\nadd table inet u\n"
    assert nft("-f", "-", stdin=one_transaction).returncode == 0
    assert generation() == start + 2  # one transaction, however many changes
    assert nft("list", "ruleset").returncode == 0
    assert nft("-f", "-", stdin="flush chain inet t missing\n").returncode != 0
    assert generation() == start + 2  # neither a listing nor a refused transaction commits


def test_failover_applies_list_the_table_only_after_someone_else_committed(netns) -> None:
    results = in_namespace("up", "down", "up", "tamper", "down", "up", "admin", "down", "up")
    assert [r["listed"] for r in results] == [True, False, False, True, False, True, False]
    assert all(r["exact"] for r in results), results  # the tampered set is put back too
