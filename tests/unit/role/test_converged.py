"""The fast path's record and comparison on a scratch router tree (router/converged.py).
Each kind of difference sends the run down the full converge; the kernel side, and a router
in sync, are in tests/kernel/test_converge_fast_path.py."""
from __future__ import annotations

import os

import pytest

from router import converged

UNCHANGED_KERNEL = {"changed": False, "commands": []}


class Packages:
    """dpkg-query's answer for the installed packages only."""

    def __init__(self, installed):
        self.installed = installed

    def run(self, argv, stdin=None, check=True):
        lines = "".join(f"{p} ii \n" for p in argv[4:] if p in self.installed)
        return type("Res", (), {"rc": 0, "stdout": lines, "stderr": ""})()


@pytest.fixture
def recorded(router, tmp_path):
    paths, _model = router
    lib = tmp_path / "lib"
    (lib / "engine").mkdir(parents=True)
    (lib / "engine" / "a.py").write_text("A = 1\n")
    conf = tmp_path / "lsm.conf"
    conf.write_text("defaults {}\n")
    os.makedirs(paths.state_dir)
    request = {"digest": "d1", "service_manager": "none", "packages": [],
               "files": [str(conf), paths.model, str(lib)], "trees": [str(lib / "engine")]}
    converged.record(request, paths)
    return paths, request, conf, lib


def verify(paths, digest="d1", kernel=None, runner=None, check=False):
    return converged.verify({"digest": digest, "service_manager": "none"}, paths, runner or Packages(set()),
                            lambda *a: kernel or UNCHANGED_KERNEL, set, check)


def test_the_record_is_private_to_root(recorded) -> None:
    paths = recorded[0]
    assert oct(os.stat(converged.manifest_path(paths)).st_mode & 0o777) == "0o600"


def test_a_new_digest_means_a_full_converge_and_drops_the_record(recorded) -> None:
    paths = recorded[0]
    assert verify(paths, digest="d2") == {"in_sync": False,
                                          "reasons": ["the role's inputs or the collection changed"]}
    assert not os.path.exists(converged.manifest_path(paths))
    assert verify(paths)["reasons"] == ["no record of a completed converge"]


def test_check_mode_keeps_the_record(recorded) -> None:
    paths = recorded[0]
    assert not verify(paths, digest="d2", check=True)["in_sync"]
    assert os.path.exists(converged.manifest_path(paths))


def test_a_hand_edited_file_is_found(recorded) -> None:
    paths, _request, conf, _lib = recorded
    conf.write_text("defaults { debug 9 }\n")
    assert verify(paths)["reasons"] == [f"{conf} is not as the last converge left it"]


def test_a_changed_mode_is_found(recorded) -> None:
    paths, _request, conf, _lib = recorded
    os.chmod(conf, 0o666)
    assert not verify(paths)["in_sync"]


def test_a_file_removed_from_or_added_to_the_runtime_is_found(recorded) -> None:
    paths, request, _conf, lib = recorded
    (lib / "engine" / "stray.py").write_text("")
    assert verify(paths)["reasons"] == [f"{lib / 'engine' / 'stray.py'} is not as the last converge left it"]
    converged.record(request, paths)
    (lib / "engine" / "a.py").unlink()
    assert not verify(paths)["in_sync"]


def test_bytecode_caches_are_not_managed_files(recorded) -> None:
    paths, _request, _conf, lib = recorded
    (lib / "engine" / "__pycache__").mkdir()
    (lib / "engine" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    assert "is not as the last converge" not in " ".join(verify(paths)["reasons"])


def test_a_removed_package_is_found(recorded) -> None:
    paths, request, _conf, _lib = recorded
    converged.record({**request, "packages": ["nftables", "conntrack"]}, paths)
    assert verify(paths, runner=Packages({"nftables"}))["reasons"] == ["package conntrack is not installed"]


def test_kernel_drift_is_found_with_the_command_that_repairs_it(recorded) -> None:
    paths = recorded[0]
    drift = {"changed": True, "commands": ["rule add fwmark 0x100/0xff00 table isp1 priority 100"]}
    assert verify(paths, kernel=drift)["reasons"] == [
        "the kernel differs from the model: rule add fwmark 0x100/0xff00 table isp1 priority 100"]


def test_a_change_waiting_for_confirmation_is_not_in_sync(recorded) -> None:
    from router import confirm as cc

    paths = recorded[0]
    with open(cc.pending_path(paths), "w") as fh:
        fh.write("token\n")
    assert verify(paths)["reasons"] == ["a change waits for confirmation"]
