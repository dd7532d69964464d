"""The monitor runs whichever Link Status Monitor is installed: foolsm (Debian 13) or lsm (Debian 12)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from engine.errors import EngineError

from router.lsmbinary import find_lsm


def install(directory: Path, name: str, executable: bool = True) -> str:
    path = directory / name
    path.write_text("#!/bin/sh\n")
    os.chmod(path, 0o755 if executable else 0o644)
    return str(path)


def test_debian_12_router_runs_lsm(tmp_path: Path) -> None:
    path = install(tmp_path, "lsm")
    assert (find_lsm(str(tmp_path)).flavour, find_lsm(str(tmp_path)).path) == ("lsm", path)


def test_debian_13_router_runs_foolsm(tmp_path: Path) -> None:
    path = install(tmp_path, "foolsm")
    assert (find_lsm(str(tmp_path)).flavour, find_lsm(str(tmp_path)).path) == ("foolsm", path)


def test_foolsm_wins_when_both_are_installed(tmp_path: Path) -> None:
    install(tmp_path, "lsm")
    install(tmp_path, "foolsm")
    assert find_lsm(str(tmp_path)).flavour == "foolsm"


def test_no_runnable_lsm_is_an_error_that_says_what_to_install(tmp_path: Path) -> None:
    install(tmp_path, "foolsm", executable=False)
    with pytest.raises(EngineError, match=r"install foolsm \(Debian 13 and later\) or lsm \(Debian 12\)"):
        find_lsm(str(tmp_path))
