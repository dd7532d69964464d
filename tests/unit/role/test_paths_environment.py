"""The router's paths come from the installed layout; the environment cannot move them."""
from __future__ import annotations

from engine.hook import protocol
from engine.paths import Paths


def test_multihome_root_in_the_environment_moves_nothing(monkeypatch) -> None:
    monkeypatch.setenv("MULTIHOME_ROOT", "/tmp/elsewhere")
    assert Paths.default().model == "/etc/netops-multihome/model.json"
    assert protocol.socket_path() == "/run/netops-multihome/hook.sock"


def test_tests_inject_a_scratch_tree_explicitly(tmp_path) -> None:
    assert Paths.default(str(tmp_path)).state_dir == f"{tmp_path}/var/lib/netops-multihome/state"
