"""Hook argument validation and the state bookkeeping of failover events."""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from engine.errors import EngineError, ValidationError
from engine.failover import state as failover
from engine.hook.lsm_args import parse_lsm_args

from router import hook as cli_hook

NAMES = ["isp1", "isp2"]


def lsm_argv(state: str, name: str, stamp: str = "") -> list:
    return [state, name, "203.0.113.10", "wan1", "", "1", "0", "0", "0", "1", "0", "0", "85",
            "198.51.100.2", "up", stamp or str(int(time.time()))]


def test_lsm_args_accepted() -> None:
    ev = parse_lsm_args(lsm_argv("long_down", "isp2", "1000"), NAMES)
    assert (ev.state, ev.name, ev.at, ev.reported) == ("down", "isp2", 1000.0, "long_down")
    group = ["up", "isp1", "", "", "", "0", "0", "0", "0", "0", "0", "0", "0", "", "down", "1000"]
    assert parse_lsm_args(group, NAMES).state == "up"


@pytest.mark.parametrize("argv", [
    lsm_argv("down", "isp3"),                       # unknown uplink
    lsm_argv("down", "isp1;reboot"),                # metacharacters
    lsm_argv("down", "$(touch /tmp/x)"),
    lsm_argv("down", "isp1 isp2"),
    lsm_argv("sideways", "isp1"),                   # unknown state
    lsm_argv("down", "isp1", "12ab"),               # bad timestamp
    ["down", "isp1", "x" * 65],                     # over-long
    ["down"],                                       # too few
    ["down", "isp1"] + ["1"] * 30,                  # too many
    ["down", "isp1\n"],                             # control characters
])
def test_hostile_lsm_args_refused(argv) -> None:
    with pytest.raises(ValidationError):
        parse_lsm_args(argv, NAMES)


class Recorder:
    """Stands in for the ruleset engine: records the states each apply was asked for."""

    def __init__(self) -> None:
        self.applied: list = []
        self.deleted: list = []
        self.owned: list = []

    def apply(self, params, runner, states):
        self.applied.append(dict(states))
        return {"changed": True, "commands": ["nft -f -"]}

    def delete(self, mark, mask, runner):
        self.deleted.append((mark, mask))
        return 3

    def own(self, model, states, runner):
        self.owned.append(dict(states))
        return {"changed": False, "commands": []}


def event(router, rec, uplink, source, state, at):
    paths, model = router
    return failover.handle_event(model, uplink, source, state, at, paths, None,
                                 apply_fn=rec.apply, delete_fn=rec.delete, own_fn=rec.own, seq=at)


def test_down_applies_live_set_and_deletes_only_that_mark(router) -> None:
    rec = Recorder()
    res = event(router, rec, "isp1", "probe", "down", 10.0)
    assert rec.applied == [{"isp1": "down", "isp2": "up"}]
    assert rec.owned == rec.applied  # the router's own traffic follows the same states
    mark = router[1]["failover"]["uplinks"]["isp1"]["mark"]
    assert rec.deleted == [(mark, 0xFF00)]
    assert res.deleted_flows == 3 and "effective=up->down" in res.line()
    assert failover.uplink_state(router[0], "isp1")[:2] == ("down", 10.0)


def test_carrier_and_probe_combine(router) -> None:
    rec = Recorder()
    event(router, rec, "isp1", "carrier", "down", 1.0)
    event(router, rec, "isp1", "probe", "down", 2.0)
    event(router, rec, "isp1", "carrier", "up", 3.0)
    assert failover.uplink_state(router[0], "isp1")[0] == "down"   # probe still down
    event(router, rec, "isp1", "probe", "up", 4.0)
    assert failover.uplink_state(router[0], "isp1")[0] == "up"
    assert len(rec.deleted) == 1                                    # one down transition


def test_all_down_keeps_flows_and_stale_events_are_ignored(router) -> None:
    rec = Recorder()
    event(router, rec, "isp1", "probe", "down", 5.0)
    event(router, rec, "isp2", "probe", "down", 6.0)
    assert len(rec.deleted) == 1                      # the last uplink's flows are kept
    res = event(router, rec, "isp2", "probe", "up", 4.0)
    assert res.ignored and failover.uplink_state(router[0], "isp2")[0] == "down"


def test_event_stamped_before_the_last_one_after_the_clock_stepped_back_is_applied(router) -> None:
    paths, model = router
    rec = Recorder()
    failover.handle_event(model, "isp1", "probe", "down", 5000.0, paths, None,
                          apply_fn=rec.apply, delete_fn=rec.delete, own_fn=rec.own, seq=10.0)
    res = failover.handle_event(model, "isp1", "probe", "up", 1000.0, paths, None,
                                apply_fn=rec.apply, delete_fn=rec.delete, own_fn=rec.own, seq=11.0)
    assert not res.ignored and failover.uplink_state(paths, "isp1")[0] == "up"


def test_a_record_of_an_earlier_boot_never_hides_a_new_event(router) -> None:
    paths, model = router
    rec = Recorder()
    os.makedirs(paths.state_dir)
    with open(os.path.join(paths.state_dir, "isp1.probe"), "w") as fh:
        fh.write("down 5000.000 seq=999999.0 boot=another-boot\n")
    res = failover.handle_event(model, "isp1", "probe", "up", 10.0, paths, None,
                                apply_fn=rec.apply, delete_fn=rec.delete, own_fn=rec.own, seq=1.0)
    assert not res.ignored and failover.uplink_state(paths, "isp1")[0] == "up"


def test_unknown_uplink_refused_before_anything(router) -> None:
    rec = Recorder()
    with pytest.raises(ValidationError):
        event(router, rec, "isp9", "probe", "down", 1.0)
    assert not rec.applied and not os.path.exists(router[0].state_dir)


def test_concurrent_events_end_in_the_last_state_per_uplink(router) -> None:
    rec = Recorder()
    events = [(f"isp{1 + i % 2}", "down" if (i * 7) % 3 else "up", 100.0 + i) for i in range(50)]
    shuffled = sorted(events, key=lambda e: (e[2] * 7919) % 50)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda e: event(router, rec, e[0], "probe", e[1], e[2]), shuffled))
    for name in NAMES:
        last = max((e for e in events if e[0] == name), key=lambda e: e[2])
        assert failover.uplink_state(router[0], name)[0] == last[1]


def test_hook_main_refuses_and_logs_hostile_input(router, capsys) -> None:
    paths = router[0]
    rc = cli_hook.main(lsm_argv("down", "isp1`id`"), paths=paths)
    assert rc == 2
    with open(paths.events) as fh:
        log = fh.read()
    assert "refused event" in log and "isp1`id`" in log
    assert not os.path.exists(paths.state_dir)


def test_failed_apply_is_retried_logged_and_redone_by_the_next_event(router) -> None:
    """The record is written first; the kernel is brought to it with retries, and when it
    still fails, the next event redoes the ruleset and the conntrack delete."""
    paths, model = router
    rec = Recorder()
    broken = {"left": 5}

    def flaky(params, runner, states):
        if broken["left"]:
            broken["left"] -= 1
            raise EngineError("nft: transaction refused")
        return rec.apply(params, runner, states)

    with pytest.raises(EngineError):
        failover.handle_event(model, "isp1", "probe", "down", 1.0, paths, None,
                              apply_fn=flaky, delete_fn=rec.delete, own_fn=rec.own, seq=1.0)
    with open(paths.events) as fh:
        assert fh.read().count("uplink=isp1 apply failed (attempt") == 3
    assert rec.deleted == []
    res = failover.handle_event(model, "isp1", "probe", "down", 2.0, paths, None,
                                apply_fn=flaky, delete_fn=rec.delete, own_fn=rec.own, seq=2.0)
    assert res.previous == "up" and res.effective["isp1"] == "down"
    assert len(rec.deleted) == 1 and failover.uplink_state(paths, "isp1")[0] == "down"
