"""apply_recorded: the balancing applied with the hook's recorded states, under its lock."""
from __future__ import annotations

import fcntl
import os

from ansible_collections.netops.multihome.plugins.module_utils.engine.failover import state as failover
from ansible_collections.netops.multihome.plugins.module_utils.engine.paths import Paths

PARAMS = {"uplinks": [{"name": "isp1", "state": "up"}, {"name": "isp2", "state": "up"},
                      {"name": "isp3", "state": "down"}]}


def test_recorded_down_wins_and_the_lock_is_held_while_applying(tmp_path) -> None:
    paths = Paths.default(str(tmp_path))
    failover.write_atomic(os.path.join(paths.state_dir, "isp1.probe"), "down 100.000\n")
    failover.write_atomic(os.path.join(paths.state_dir, "isp2.carrier"), "up 100.000\n")
    seen = {}

    def fake_apply(params, runner, states):
        fd = os.open(paths.lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            seen["locked"] = False
        except BlockingIOError:
            seen["locked"] = True
        finally:
            os.close(fd)
        seen["states"] = states
        return {"changed": True}

    assert failover.apply_recorded(PARAMS, None, paths=paths, apply_fn=fake_apply) == {"changed": True}
    assert seen == {"locked": True, "states": {"isp1": "down", "isp2": "up", "isp3": "down"}}


def test_an_event_recorded_after_a_first_read_is_applied(tmp_path) -> None:
    """The race of a converge: whatever was recorded before the apply takes the lock wins."""
    paths = Paths.default(str(tmp_path))
    applied = []

    def fake(params, runner, states):
        applied.append(states)
        return {"changed": False}

    failover.apply_recorded(PARAMS, None, paths=paths, apply_fn=fake)
    failover.write_atomic(os.path.join(paths.state_dir, "isp2.probe"), "down 200.000\n")
    failover.apply_recorded(PARAMS, None, paths=paths, apply_fn=fake)
    assert [s["isp2"] for s in applied] == ["up", "down"]


def _apply_states(params, paths, **kwargs):
    seen = {}

    def fake(params, runner, states):
        seen.update(states)
        return {"changed": False}

    failover.apply_recorded(params, None, paths=paths, apply_fn=fake, **kwargs)
    return seen


def test_records_of_a_removed_uplink_are_deleted(tmp_path) -> None:
    paths = Paths.default(str(tmp_path))
    for name in ("isp1.probe", "isp9.probe", "isp9.carrier", "isp9"):
        failover.write_atomic(os.path.join(paths.state_dir, name), "down 100.000\n")
    assert _apply_states(PARAMS, paths)["isp1"] == "down"
    assert sorted(os.listdir(paths.state_dir)) == ["isp1.probe"]


def test_failover_off_ignores_and_deletes_every_record(tmp_path) -> None:
    paths = Paths.default(str(tmp_path))
    failover.write_atomic(os.path.join(paths.state_dir, "isp1.probe"), "down 100.000\n")
    states = _apply_states(PARAMS, paths, use_records=False)
    assert states == {"isp1": "up", "isp2": "up", "isp3": "down"}
    assert os.listdir(paths.state_dir) == []
