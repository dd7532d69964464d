"""Fixtures of the molecule verifiers (testinfra), run by `molecule verify` from a scenario.

testinfra's `host` reaches each router the way molecule's inventory does (ansible connection:
SSH with the lab's key and options); `lab` is the scenario's namespace lab on this machine, for
traffic through it.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from harness import Lab, wait_for  # noqa: E402


@pytest.fixture(scope="session")
def lab() -> Lab:
    # The same topology as create, or up() would rebuild the lab.
    instance = Lab(os.environ["MH_LAB"], os.environ.get("MH_TOPOLOGY", "default"))
    instance.up()
    # LSM's first verdicts arrive after the hold time.
    for router in instance.plan["routers"]:
        for uplink in instance.router(router)["uplinks"]:
            cat = ["cat", f"/var/lib/netops-multihome/state/{uplink['isp']}"]
            verdict = wait_for(lambda r=router, c=cat: "probe=up" in instance.run(r, c, check=False).stdout,
                               10)
            assert verdict is not None, f"{router}: LSM gave no verdict for {uplink['isp']}"
    return instance
