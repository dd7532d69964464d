"""K-of-N quorum over an uplink's targets and the degraded source: planning and bookkeeping."""
from __future__ import annotations

import json
import os
import re

import pytest
from engine.errors import EngineError, ValidationError
from engine.failover import state as failover
from engine.failover.probes import connections
from engine.hook.lsm_args import parse_lsm_args
from engine.model.role import build_model, lsm_connections
from engine.runner import Runner

from router import hook as cli_hook
from router.reasons import reason_of

from .test_hook import Recorder, lsm_argv
from .test_model import variant

THREE = ["203.0.113.10", "203.0.113.11", "203.0.113.12"]


def role_vars(down_targets=None, degraded_when=None):
    out = variant(multihome_uplinks__0__targets=THREE)
    if down_targets is not None:
        out["multihome_uplinks"][0]["monitor"] = {"down_targets": down_targets}
    if degraded_when is not None:
        out["multihome_uplinks"][1]["degraded_when"] = degraded_when
    return out


@pytest.fixture
def quorum_router(router):
    """The unit router with isp1 probing three targets, down at two; isp2 degraded_when set."""
    paths = router[0]
    model = build_model(role_vars(2, {"loss_pct": 10, "rtt_ms": 100}))
    with open(paths.model, "w") as fh:
        json.dump(model, fh)
    return paths, model


def target_event(router, rec, uplink, target, state, at, source="probe"):
    paths, model = router
    return failover.handle_event(model, uplink, source, state, at, paths, None, apply_fn=rec.apply,
                                 delete_fn=rec.delete, own_fn=rec.own, seq=at, target=target)


def test_down_targets_defaults_to_every_target() -> None:
    model = build_model(role_vars())
    assert model["failover"]["uplinks"]["isp1"]["monitor"]["down_targets"] == 3
    assert model["failover"]["uplinks"]["isp2"]["monitor"]["down_targets"] == 1
    assert model["failover"]["uplinks"]["isp1"]["degraded"] == {}


@pytest.mark.parametrize("value, allowed", [(4, "from 1 to 3"), (0, "from 1 to 3"), ("2", "from 1 to 3"),
                                            (True, "from 1 to 3")])
def test_down_targets_outside_one_to_n_names_variable_value_and_range(value, allowed) -> None:
    with pytest.raises(ValidationError) as err:
        build_model(role_vars(down_targets=value))
    assert err.value.option == "multihome_uplinks[0].monitor.down_targets"
    assert err.value.value == value and allowed in err.value.allowed and "3 targets" in err.value.allowed


@pytest.mark.parametrize("degraded_when, option, allowed", [
    ({"loss_pct": 0}, "loss_pct", "from 1 to 79"),
    ({"loss_pct": 80}, "loss_pct", "from 1 to 79"),
    ({"rtt_ms": 250}, "rtt_ms", "from 1 to 249"),
    ({"rtt_ms": "fast"}, "rtt_ms", "from 1 to 249"),
    ({"jitter_ms": 5}, "jitter_ms", "loss_pct, rtt_ms"),
    ("10%", "", "a dictionary"),
])
def test_degraded_thresholds_out_of_range_name_variable_and_range(degraded_when, option, allowed) -> None:
    with pytest.raises(ValidationError) as err:
        build_model(role_vars(degraded_when=degraded_when))
    assert err.value.option == "multihome_uplinks[1].degraded_when" + (f".{option}" if option else "")
    assert allowed in err.value.allowed


def test_degraded_connection_per_target_is_the_stricter_probe() -> None:
    model = build_model(role_vars(2, {"loss_pct": 10, "rtt_ms": 100}))
    conns = {c["name"]: c for c in lsm_connections(model, "/hook")}
    assert list(conns) == ["isp1.1", "isp1.2", "isp1.3", "isp2", "isp2.1.degraded"]
    normal, strict = conns["isp2"], conns["isp2.1.degraded"]
    assert (normal["timeout_ms"], strict["timeout_ms"]) == (250, 100)
    assert (strict["max_packet_loss"], strict["min_packet_loss"]) == (10, 5)
    # the hold is failback's: the same answered probes in a row
    assert strict["min_successive_pkts_rcvd"] == normal["min_successive_pkts_rcvd"] == 50
    assert strict["checkip"] == normal["checkip"] and strict["sourceip"] == normal["sourceip"]
    assert {c.source for c in connections(model).values()} == {"probe", "degraded"}


def test_hook_accepts_each_connection_name_and_refuses_a_target_not_configured() -> None:
    model = build_model(role_vars(2, {"rtt_ms": 100}))
    known = list(connections(model))
    assert parse_lsm_args(lsm_argv("down", "isp1.3"), known).name == "isp1.3"
    assert parse_lsm_args(lsm_argv("up", "isp2.1.degraded"), known).name == "isp2.1.degraded"
    assert parse_lsm_args(lsm_argv("down", "isp1"), known).name == "isp1"  # an earlier release's group
    for bad in ("isp1.4", "isp2.2.degraded", "isp1.1.degraded", "isp-1.1", "isp1.0"):
        with pytest.raises(ValidationError):
            parse_lsm_args(lsm_argv("down", bad), known)


def test_two_of_three_targets_down_take_the_uplink_down_one_does_not(quorum_router) -> None:
    rec = Recorder()
    first = target_event(quorum_router, rec, "isp1", 3, "down", 1.0)
    assert first.state == "up" and rec.applied == [{"isp1": "up", "isp2": "up"}]
    assert "target=3:down targets_down=1/3 down_at=2" in first.line()
    second = target_event(quorum_router, rec, "isp1", 1, "down", 2.0)
    assert second.state == "down" and "effective=up->down" in second.line() and len(rec.deleted) == 1
    target_event(quorum_router, rec, "isp1", 2, "down", 3.0)
    target_event(quorum_router, rec, "isp1", 3, "up", 4.0)        # two still down
    assert failover.uplink_state(quorum_router[0], "isp1")[0] == "down"
    back = target_event(quorum_router, rec, "isp1", 2, "up", 5.0)
    assert back.state == "up" and "effective=down->up" in back.line()
    assert len(rec.deleted) == 1 and rec.applied[-1] == {"isp1": "up", "isp2": "up"}


def test_default_quorum_needs_every_target(router) -> None:
    rec = Recorder()  # GOOD: isp1 has two targets, down_targets not set
    assert target_event(router, rec, "isp1", 1, "down", 1.0).state == "up"
    assert target_event(router, rec, "isp1", 2, "down", 2.0).state == "down"


def test_a_stale_target_event_is_ignored_and_target_records_survive_a_converge(quorum_router) -> None:
    paths, _model = quorum_router
    rec = Recorder()
    target_event(quorum_router, rec, "isp1", 1, "down", 5.0)
    assert target_event(quorum_router, rec, "isp1", 1, "up", 4.0).ignored
    failover.clear_records(paths, ["isp1", "isp2"])
    assert sorted(os.listdir(paths.state_dir)) == ["isp1", "isp1.probe", "isp1.probe.1"]
    assert target_event(quorum_router, rec, "isp1", 2, "down", 6.0).state == "down"
    with pytest.raises(ValidationError):
        target_event(quorum_router, rec, "isp1", 4, "down", 7.0)


def test_degraded_leaves_rotation_keeps_flows_and_a_later_hard_down_deletes_them(quorum_router) -> None:
    paths = quorum_router[0]
    rec = Recorder()
    res = target_event(quorum_router, rec, "isp2", 1, "down", 1.0, source="degraded")
    assert res.effective == {"isp1": "up", "isp2": "down"} and rec.deleted == []
    state, _since, detail = failover.uplink_state(paths, "isp2")
    assert reason_of(state, detail) == "degraded"
    target_event(quorum_router, rec, "isp2", None, "down", 2.0)  # then its only target dies
    assert len(rec.deleted) == 1
    target_event(quorum_router, rec, "isp2", None, "up", 3.0)
    assert failover.uplink_state(paths, "isp2")[0] == "down"      # still degraded
    target_event(quorum_router, rec, "isp2", 1, "up", 4.0, source="degraded")
    assert failover.uplink_state(paths, "isp2")[0] == "up" and len(rec.deleted) == 1


class NoKernel(Runner):
    """Refuses every command: these unit tests never touch the host's kernel."""

    def run(self, argv, stdin=None, check=True):
        raise EngineError(f"no kernel in unit tests: {argv[0]}")


def test_hook_turns_a_connection_name_into_its_uplink_source_and_target(quorum_router) -> None:
    paths = quorum_router[0]
    for name in ("isp1", "isp2"):  # both recorded up: a verdict that changes nothing applies nothing
        failover.write_atomic(os.path.join(paths.state_dir, name), "up 1.000 probe=up\n")
    assert cli_hook.main(lsm_argv("down", "isp1.2"), paths=paths, runner=NoKernel()) == 0
    # the degraded verdict takes isp2 out of rotation: it reaches the (refused) ruleset apply
    assert cli_hook.main(lsm_argv("long_down", "isp2.1.degraded"), paths=paths, runner=NoKernel()) == 1
    with open(paths.events) as fh:
        log = fh.read()
    assert re.search(r"uplink=isp1 source=probe state=up .*target=2:down targets_down=1/3", log), log
    assert re.search(r"uplink=isp2 source=degraded state=down failed: no kernel", log), log


def test_rtt_only_judges_slow_probes_in_the_loss_window() -> None:
    model = build_model(role_vars(degraded_when={"rtt_ms": 150}))
    strict = model["failover"]["uplinks"]["isp2"]["degraded"]["lsm"]
    assert (strict["timeout_ms"], strict["max_packet_loss"], strict["min_packet_loss"]) == (150, 10, 5)
    conservative = build_model(dict(role_vars(degraded_when={"loss_pct": 90}),
                                    multihome_monitor_profile="conservative"))
    assert conservative["failover"]["uplinks"]["isp2"]["degraded"]["loss_pct"] == 90


def test_a_drained_uplink_that_then_goes_down_loses_its_flows(router) -> None:
    rec = Recorder()
    paths, model = router
    failover.handle_event(model, "isp2", "admin", "down", 1.0, paths, None, apply_fn=rec.apply,
                          delete_fn=rec.delete, own_fn=rec.own, seq=1.0)
    assert rec.deleted == []
    target_event(router, rec, "isp2", None, "down", 2.0)
    assert len(rec.deleted) == 1


def test_a_new_lsm_process_starts_the_quorum_afresh(quorum_router) -> None:
    paths = quorum_router[0]
    rec = Recorder()
    target_event(quorum_router, rec, "isp1", 1, "down", 1.0)
    target_event(quorum_router, rec, "isp1", 2, "down", 2.0)
    failover.forget_targets(paths, "isp1")
    assert sorted(os.listdir(paths.state_dir)) == ["isp1", "isp1.probe"]
    # the first verdict after the restart decides alone: one target down of three is no outage
    assert target_event(quorum_router, rec, "isp1", 3, "down", 3.0).state == "up"
