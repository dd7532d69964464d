"""Shared fixtures: a lab per test module, torn down afterwards.

A module picks its topology with a module-level ``LAB_TOPOLOGY = "three_isp"``
(default: ``default``).
"""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
# Tests import the collection as Ansible does: ansible_collections.netops.multihome...
COLLECTIONS = ROOT / ".build" / "collections"
_link = COLLECTIONS / "ansible_collections" / "netops" / "multihome"
if not _link.exists():
    _link.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):  # parallel workers may race to create it
        _link.symlink_to(ROOT)
sys.path.insert(0, str(COLLECTIONS))

from harness import Lab, lab_name  # noqa: E402


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces)")
    topology = getattr(request.module, "LAB_TOPOLOGY", "default")
    instance = Lab(lab_name("mht"), topology)
    instance.down()
    instance.up()
    yield instance
    instance.down()
