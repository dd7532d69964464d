"""Operability on the lab's router r1 (issue 15): the versioned ``status --json`` schema read
field by field, the human table and ``--watch``, ``multihome drain``/``undrain`` under
live streams, the Prometheus textfile parsed with prometheus_client, and user hooks (the
environment they get, the ones refused, a hanging one that must not delay failover)."""
from __future__ import annotations

import collections
import json
import re
import time
from pathlib import Path

import pytest
from harness import PORT, SERVER4, wait_for
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
ISP1, ISP2 = "198.51.100.2", "198.51.100.6"
STATE = "/var/lib/netops-multihome/state"
EVENTS = "/var/log/netops-multihome/events.log"
METRICS = "/var/lib/prometheus/node-exporter/multihome.prom"
HOOKS = "/etc/netops-multihome/hooks.d"
HOOK_ENV = "/var/tmp/multihome-hook-env"
RECORD_HOOK = (f"#!/bin/sh\nenv | grep ^MULTIHOME_ | sort | tr '\\n' ' ' >> {HOOK_ENV}\n"
               f"echo >> {HOOK_ENV}\necho recorded\n")
HOOK_TIMEOUT = 3


def status(lab) -> dict:
    return json.loads(lab.run("r1", ["multihome", "status", "--json"]).stdout)


def uplink(lab, name: str) -> dict:
    return next(u for u in status(lab)["uplinks"] if u["name"] == name)


@pytest.fixture(scope="module")
def converged(lab):
    done = lab.playbook("-e", json.dumps({
        "multihome_user_hooks": [{"name": "10-record", "content": RECORD_HOOK}],
        "multihome_user_hook_timeout": HOOK_TIMEOUT, "multihome_metrics_interval": 1}))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert wait_for(lambda: all("probe=up" in lab.run("r1", ["cat", f"{STATE}/{u}"], check=False).stdout
                                for u in ("isp1", "isp2")), 10)
    return lab


def test_status_json_schema_v1_every_field_has_its_documented_type_and_value(converged) -> None:
    lab = converged
    with lab.stream("c1", count=4, duration=4.0):
        time.sleep(0.5)
        data = status(lab)
    assert set(data) == {"schema_version", "backend", "mode", "failover", "ruleset_in_sync", "uplinks", "ha",
                         "own_traffic"}
    assert data["schema_version"] == 1 and data["ha"] is None  # a single router (HA: test_ha_pair.py)
    assert data["own_traffic"] == "isp1"  # both up, same tier and weight: the first by name
    assert (data["backend"], data["mode"], data["failover"], data["ruleset_in_sync"]) == (
        "nftables", "round_robin", True, True)
    fields = {"name", "interface", "state", "reason", "drained", "since", "detail", "weight", "tier",
              "mark", "table", "flows", "last_event", "rtt_ms", "jitter_ms", "loss_pct", "targets",
              "bytes_last_minute"}
    target_fields = {"target", "connection", "state", "rtt_ms", "jitter_ms", "loss_pct", "probes",
                     "last_change", "sampled_at"}
    for up, (name, iface) in zip(data["uplinks"], (("isp1", "wan1"), ("isp2", "wan2")), strict=True):
        assert set(up) == fields, up
        assert (up["name"], up["interface"], up["state"], up["reason"], up["drained"]) == (
            name, iface, "up", "ok", False)
        assert isinstance(up["since"], float) and time.time() - 3600 < up["since"] <= time.time()
        assert "probe=up" in up["detail"] and "carrier=up" in up["detail"]
        assert (up["weight"], up["tier"]) == (1, 1)
        rules = lab.run("r1", ["ip", "rule", "show", "table", str(up["table"])]).stdout
        assert f"fwmark {up['mark']}/0xff00" in rules
        assert up["flows"] >= 2 and f"uplink={name} " in up["last_event"]
        # the interface's bytes since the monitor's oldest sample of the last minute (LSM's probes at least)
        moved = up["bytes_last_minute"]
        assert set(moved) == {"rx", "tx", "seconds"} and 0 < moved["seconds"] <= 60, moved
        assert all(isinstance(moved[k], int) and moved[k] > 0 for k in ("rx", "tx")), moved
        # health quality from LSM's dumps (values: tests/kernel/test_health_quality.py)
        assert isinstance(up["rtt_ms"], float) and up["rtt_ms"] > 0, up
        assert isinstance(up["jitter_ms"], float) and up["jitter_ms"] >= 0, up
        assert isinstance(up["loss_pct"], float) and 0 <= up["loss_pct"] <= 100, up
        assert [t["target"] for t in up["targets"]] == ["203.0.113.10", "203.0.113.11"]
        for n, target in enumerate(up["targets"], 1):
            assert set(target) == target_fields, target
            assert (target["connection"], target["state"]) == (f"{name}.{n}", "up")
            assert isinstance(target["rtt_ms"], float) and target["rtt_ms"] > 0
            assert isinstance(target["jitter_ms"], float) and isinstance(target["loss_pct"], float)
            assert isinstance(target["probes"], int) and 0 < target["probes"] <= 100
            assert isinstance(target["last_change"], float) and target["last_change"] >= up["since"] - 60
            assert isinstance(target["sampled_at"], float) and time.time() - target["sampled_at"] < 10


def test_status_table_has_a_reason_column_and_watch_redraws_in_place(converged) -> None:
    lab = converged
    table = lab.run("r1", ["multihome", "status"]).stdout.splitlines()
    assert table[0].endswith(" own-traffic=isp1"), table
    assert table[2].split() == ["UPLINK", "IFACE", "STATE", "REASON", "SINCE", "WEIGHT", "TIER", "FLOWS",
                                "RX/TX(1m)", "RTT", "JITTER", "LOSS"]
    assert re.fullmatch(r"[0-9.]+[kMG]?B/[0-9.]+[kMG]?B", table[3].split()[-4]), table
    assert table[3].split()[:4] == ["isp1", "wan1", "up", "ok"]
    rtt, jitter, loss = table[3].split()[-3:]
    assert rtt.endswith("ms") and float(rtt[:-2]) > 0 and jitter.endswith("ms") and loss.endswith("%"), table
    watch = lab.run("r1", ["timeout", "-s", "INT", "1.5", "multihome", "status", "--watch",
                           "--interval", "0.3"], check=False).stdout
    frames = watch.split("\x1b[H\x1b[2J")[1:]
    assert len(frames) >= 3 and all("isp2" in f for f in frames), watch


def test_drained_uplink_keeps_its_streams_gets_no_new_flows_runs_hooks_survives_apply_and_undrain_restores(
        converged) -> None:
    lab = converged
    try:
        with lab.stream("c1", count=6, duration=900.0) as streams:
            time.sleep(1.0)
            lab.run("r1", ["rm", "-f", HOOK_ENV])
            lab.run("r1", ["multihome", "drain", "isp1"])
            # the operator's command ran the user hooks for the change before returning
            assert lab.run("r1", ["cat", HOOK_ENV]).stdout.split() == [
                "MULTIHOME_LIVE_UPLINKS=isp2", "MULTIHOME_NEW_STATE=down", "MULTIHOME_OLD_STATE=up",
                "MULTIHOME_REASON=admin", "MULTIHOME_UPLINK=isp1"]
            drained = uplink(lab, "isp1")
            assert (drained["state"], drained["reason"], drained["drained"]) == (
                "down", "admin-drained", True)
            assert drained["flows"] >= 3, drained  # its established streams were not deleted
            assert set(lab.flows("c1", 6)) == {ISP2}
            # what a reboot replays (multihome boot applies the recorded states)
            assert "admin=down" in lab.run("r1", ["cat", f"{STATE}/isp1"]).stdout
            lab.run("r1", ["multihome", "apply"])
            assert set(lab.flows("c1", 4)) == {ISP2}
            time.sleep(1.0)
            streams.end_early()
        # streams opened before the drain stayed on their uplink without a stall
        assert {tuple(r["sources"]) for r in streams.reports} == {(ISP1,), (ISP2,)}
        assert [r for r in streams.reports if r.get("error") or r["max_gap"] >= 1.0] == []
    finally:
        lab.run("r1", ["multihome", "undrain", "isp1"])
    assert uplink(lab, "isp1")["reason"] == "ok"
    assert collections.Counter(lab.flows("c1", 4)) == {ISP1: 2, ISP2: 2}


def test_draining_an_unknown_uplink_is_refused_naming_the_allowed_ones(converged) -> None:
    proc = converged.run("r1", ["multihome", "drain", "isp9"], check=False)
    assert proc.returncode == 1 and "isp9" in proc.stderr and "isp1, isp2" in proc.stderr, proc.stderr


def metrics(lab) -> dict:
    """{(name, labels as a sorted tuple): value} from the textfile, through the official parser."""
    text = lab.run("r1", ["cat", METRICS]).stdout
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_metrics_textfile_parses_and_reports_states_flows_events_histogram_and_interface_counters(
        converged) -> None:
    lab = converged
    before = metrics(lab)
    with lab.stream("c1", count=4, duration=900.0) as streams:
        time.sleep(0.5)
        lab.run("r1", ["multihome", "drain", "isp2"])
        try:
            assert wait_for(lambda: metrics(lab)[("multihome_uplink_state", (("state", "drained"),
                                                                              ("uplink", "isp2")))] == 1, 5)
            now = metrics(lab)
        finally:
            lab.run("r1", ["multihome", "undrain", "isp2"])
        streams.end_early()
    for state, value in (("up", 1), ("down", 0), ("drained", 0)):
        assert now[("multihome_uplink_state", (("state", state), ("uplink", "isp1")))] == value
    assert now[("multihome_uplink_up", (("uplink", "isp2"),))] == 0
    assert now[("multihome_uplink_effective_weight", (("uplink", "isp1"),))] == 1
    assert now[("multihome_uplink_effective_weight", (("uplink", "isp2"),))] == 0
    assert now[("multihome_uplink_flows", (("uplink", "isp1"),))] >= 2
    assert now[("multihome_uplink_flows", (("uplink", "isp2"),))] >= 2  # drained, its flows kept
    assert 0 <= now[("multihome_uplink_since_change_seconds", (("uplink", "isp2"),))] < 5
    # interface counters are as of the monitor's latest sample, taken once per interval (1 s)
    counters = [(f"multihome_uplink_{counter}_total", (("uplink", uplink),)) for uplink in ("isp1", "isp2")
                for counter in ("receive_bytes", "transmit_bytes", "receive_packets", "transmit_packets")]
    advanced = wait_for(lambda: all(metrics(lab)[key] > before[key] for key in counters), 5, step=0.2)
    assert advanced is not None, [(key, before[key], metrics(lab)[key]) for key in counters]
    # every event since the monitor started is counted and timed
    events = sum(v for (name, _), v in now.items() if name == "multihome_events_total")
    timed = now[("multihome_event_apply_duration_seconds_count", ())]
    assert events >= 2 and timed >= 2
    assert now[("multihome_event_apply_duration_seconds_bucket", (("le", "+Inf"),))] == timed
    assert time.time() - now[("multihome_metrics_last_write_timestamp_seconds", ())] < 5
    # health quality from LSM's reports, in base units (values: tests/kernel/test_health_quality.py)
    for uplink in ("isp1", "isp2"):
        assert 0 < now[("multihome_uplink_rtt_seconds", (("uplink", uplink),))] < 0.01
        assert now[("multihome_uplink_jitter_seconds", (("uplink", uplink),))] >= 0
        assert 0 <= now[("multihome_uplink_loss_ratio", (("uplink", uplink),))] <= 1
        for target in ("203.0.113.10", "203.0.113.11"):
            labels = (("target", target), ("uplink", uplink))
            assert 0 < now[("multihome_target_rtt_seconds", labels)] < 0.01
            assert now[("multihome_target_jitter_seconds", labels)] >= 0
            assert 0 <= now[("multihome_target_loss_ratio", labels)] <= 1


def carrier_event_seconds(lab, name: str) -> float:
    """From cutting NAME's carrier to its applied event in the log, then carrier back."""
    lab.run("r1", ["sh", "-c", f": > {EVENTS}"])
    lab.carrier_down(name)
    try:
        took = wait_for(lambda: f"uplink={name} source=carrier state=down" in lab.run(
            "r1", ["cat", EVENTS]).stdout, 10.0, step=0.02)
        assert took is not None, "carrier loss not applied within 10 s"
    finally:
        lab.carrier_up(name)
    assert wait_for(lambda: uplink(lab, name)["state"] == "up", 10.0) is not None
    return took


def test_user_hook_receives_the_event_environment_and_its_output_is_logged(converged) -> None:
    lab = converged
    lab.run("r1", ["rm", "-f", HOOK_ENV])
    carrier_event_seconds(lab, "isp2")
    assert wait_for(lambda: len(lab.run("r1", ["cat", HOOK_ENV], check=False).stdout.splitlines()) >= 2, 10)
    down, up_ = lab.run("r1", ["cat", HOOK_ENV]).stdout.splitlines()[:2]
    assert down.split() == ["MULTIHOME_LIVE_UPLINKS=isp1", "MULTIHOME_NEW_STATE=down",
                            "MULTIHOME_OLD_STATE=up", "MULTIHOME_REASON=carrier", "MULTIHOME_UPLINK=isp2"]
    assert up_.split() == ["MULTIHOME_LIVE_UPLINKS=isp1,isp2", "MULTIHOME_NEW_STATE=up",
                           "MULTIHOME_OLD_STATE=down", "MULTIHOME_REASON=carrier", "MULTIHOME_UPLINK=isp2"]
    log = lab.run("r1", ["tail", "-n", "30", EVENTS]).stdout
    assert f"user hook {HOOKS}/10-record uplink=isp2 rc=0" in log and "output: 'recorded'" in log


def test_hooks_not_executable_or_not_root_owned_or_group_writable_are_skipped_and_logged(converged) -> None:
    lab = converged
    bad = {"20-noexec": ("0644", "0"), "21-notroot": ("0755", "1000"), "22-groupw": ("0775", "0")}
    for name, (mode, owner) in bad.items():
        lab.run("r1", ["sh", "-c", f"printf '#!/bin/sh\\ntouch /var/tmp/{name}-ran\\n' > {HOOKS}/{name} && "
                                   f"chmod {mode} {HOOKS}/{name} && chown {owner} {HOOKS}/{name}"])
    try:
        carrier_event_seconds(lab, "isp2")
        assert wait_for(lambda: lab.run("r1", ["grep", "-c", "22-groupw skipped", EVENTS], check=False)
                        .stdout.strip() not in ("", "0"), 10)
        log = lab.run("r1", ["tail", "-n", "60", EVENTS]).stdout
        assert f"{HOOKS}/20-noexec skipped: not executable (mode 0644)" in log
        assert f"{HOOKS}/21-notroot skipped: owned by uid 1000, not root" in log
        assert f"{HOOKS}/22-groupw skipped: writable by group or others (mode 0775)" in log
        for name in bad:
            assert lab.run("r1", ["test", "-e", f"/var/tmp/{name}-ran"], check=False).returncode == 1
    finally:
        lab.run("r1", ["rm", "-f", *(f"{HOOKS}/{name}" for name in bad)])


def test_hanging_user_hook_is_killed_after_its_timeout_and_leaves_carrier_failover_time_unchanged(
        converged) -> None:
    lab = converged
    without = sorted(carrier_event_seconds(lab, "isp2") for _ in range(3))
    lab.run("r1", ["sh", "-c", f"printf '#!/bin/sh\\nsleep 600\\n' > {HOOKS}/30-hang && "
                               f"chmod 0700 {HOOKS}/30-hang"])
    try:
        with_hang = sorted(carrier_event_seconds(lab, "isp2") for _ in range(3))
        assert wait_for(lambda: "30-hang uplink=isp2 killed after the 3s timeout" in lab.run(
            "r1", ["tail", "-n", "60", EVENTS]).stdout, 3 * 2 * HOOK_TIMEOUT + 10)
    finally:
        lab.run("r1", ["rm", "-f", f"{HOOKS}/30-hang"])
    print(f"carrier event-to-apply, median: without hook {without[1]:.3f}s, "
          f"with a hanging hook {with_hang[1]:.3f}s")
    # a hook run inline would add its whole timeout (3 s) to every event; half of it is the
    # margin for a loaded machine
    assert with_hang[1] < without[1] + HOOK_TIMEOUT / 2, (without, with_hang)


def test_unwritable_metrics_dir_is_logged_once_and_the_monitor_keeps_failing_over(converged) -> None:
    lab = converged
    conf = "/etc/netops-multihome/operability.json"
    saved = lab.run("r1", ["cat", conf]).stdout
    broken = dict(json.loads(saved), metrics_dir="/proc/version")
    lab.run("r1", ["sh", "-c", f"cat > {conf}"], stdin=json.dumps(broken))
    error = "metrics: cannot write /proc/version/multihome.prom"
    try:
        lab.run("r1", ["sh", "-c", f": > {EVENTS}"])
        lab.run("r1", ["multihome", "monitor", "--restart"])
        time.sleep(3.0)  # three refreshes at metrics_interval=1
        log = lab.run("r1", ["cat", EVENTS]).stdout
        assert log.count(error) == 1 and "monitor started" in log, log
        carrier_event_seconds(lab, "isp2")  # the monitor still fails over
        time.sleep(1.5)
        assert error not in lab.run("r1", ["cat", EVENTS]).stdout  # logged once, not per refresh
    finally:
        lab.run("r1", ["sh", "-c", f"cat > {conf}"], stdin=saved)
        lab.run("r1", ["sh", "-c", f": > {EVENTS}"])
        lab.run("r1", ["multihome", "monitor", "--restart"])
        # the restarted LSMs report their first verdicts; later tests start from a steady router
        assert wait_for(lambda: all(f"uplink={name} source=probe" in lab.run("r1", ["cat", EVENTS]).stdout
                                    for name in ("isp1", "isp2")), 20) is not None


def test_flows_view_lists_each_stream_under_the_uplink_the_server_saw_it_from_with_bytes(converged) -> None:
    lab = converged
    # per-flow byte accounting is a kernel setting the administrator owns; the lab turns it on
    lab.run("r1", ["sysctl", "-qw", "net.netfilter.nf_conntrack_acct=1"])
    view = json.loads(lab.run("r1", ["multihome", "flows", "--json", "--top", "1000"]).stdout)
    earlier = {(f["src"], f["sport"]) for name in view for f in view[name]["top"]}
    with lab.stream("c1", count=4, duration=900.0) as streams:
        time.sleep(1.0)
        view = json.loads(lab.run("r1", ["multihome", "flows", "--json", "--top", "1000"]).stdout)
        table = lab.run("r1", ["multihome", "flows", "--top", "1"]).stdout
        streams.end_early()
    seen = collections.Counter(r["sources"][0] for r in streams.reports)
    assert set(view) == {"isp1", "isp2"}
    for name, address in (("isp1", ISP1), ("isp2", ISP2)):
        ours = [f for f in view[name]["top"]
                if (f["dst"], f["dport"], f["state"]) == (SERVER4, str(PORT), "ESTABLISHED")
                and (f["src"], f["sport"]) not in earlier]  # entries of earlier tests' flows may linger
        assert len(ours) == seen[address] == 2, (name, view[name])
        assert all(f["proto"] == "tcp" and f["bytes"] > 0 and f["packets"] > 0 for f in ours)
        assert [f["bytes"] for f in view[name]["top"]] == sorted((f["bytes"] for f in view[name]["top"]),
                                                                  reverse=True)
        assert f"{name}: {view[name]['flows']} flows" in table


@pytest.mark.parametrize(("extra", "shown"), [
    ({"multihome_metrics_interval": 0}, "multihome_metrics_interval=0 on r1 (allowed: 1 to 300 seconds)"),
    ({"multihome_user_hook_timeout": 900},
     "multihome_user_hook_timeout=900 on r1 (allowed: 1 to 600 seconds)"),
    ({"multihome_metrics_dir": "metrics"},
     "multihome_metrics_dir='metrics' on r1 (allowed: an absolute path"),
    ({"multihome_user_hooks": [{"name": "../x", "content": "#!/bin/sh\n"}]},
     "multihome_user_hooks names=../x on r1 (allowed: unique file names"),
])
def test_bad_operability_variable_stops_site_yml_naming_it_before_the_router_changes(
        converged, extra, shown) -> None:
    lab = converged
    before = lab.snapshot("r1")
    bad = lab.playbook("-e", json.dumps(extra))
    assert bad.returncode != 0 and shown in bad.stdout, bad.stdout[-3000:]
    assert lab.snapshot("r1") == before
