"""The router's operability pieces without a kernel: event lines, settings, hook refusal,
the metrics text (parsed by prometheus_client) and a failed write."""
from __future__ import annotations

import os

from engine.runner import Runner
from prometheus_client.parser import text_string_to_metric_families

from router.events import parse_event_line
from router.metrics import Metrics
from router.operability import DEFAULTS, load_config
from router.reasons import reason_of
from router.user_hooks import event_environment, refusal

LINE = ("uplink=isp1 source=probe state=down effective=up->down live=isp2 rules=changed "
        "flows_deleted=3 ms=12.5 via=monitor process_ms=40")


class NoKernel(Runner):
    """conntrack and ip answer nothing (the metrics text is tested without flows or links)."""

    def run(self, argv, check=True, **_kw):
        import subprocess

        return subprocess.CompletedProcess(argv, 0, "", "")


def test_event_line_fields_and_apply_time_not_the_hook_process_time() -> None:
    event = parse_event_line(LINE)
    assert (event.uplink, event.source, event.state, event.old, event.new, event.live) == (
        "isp1", "probe", "down", "up", "down", "isp2")
    assert event.apply_seconds == 0.0125 and event.changed
    assert event_environment(event)["MULTIHOME_LIVE_UPLINKS"] == "isp2"
    ignored = parse_event_line("uplink=isp1 source=probe state=down ignored (older)")
    assert ignored is not None and not ignored.changed
    assert parse_event_line("monitor started pid=1") is None


def test_reason_names_the_source_that_says_down_drain_first() -> None:
    assert reason_of("up", "carrier=up probe=up") == "ok"
    assert reason_of("down", "admin=down carrier=down probe=up") == "admin-drained"
    assert reason_of("down", "carrier=down probe=down") == "carrier"
    assert reason_of("down", "carrier=up probe=down") == "probe"
    assert reason_of("down", "absent=down carrier=up") == "absent"


def test_settings_out_of_range_are_logged_by_name_and_default_kept(tmp_path) -> None:
    path = tmp_path / "operability.json"
    path.write_text('{"metrics_interval": 0, "hook_timeout": true, "metrics_dir": "rel", "nope": 1}')
    logged: list = []
    config = load_config(str(path), logged.append)
    assert config == DEFAULTS
    assert any("metrics_interval=0 ignored: allowed is a number of seconds from 1 to 300" in m
               for m in logged)
    assert any("hook_timeout=True ignored" in m for m in logged)
    assert any("metrics_dir='rel' ignored: allowed is an absolute path" in m for m in logged)
    assert any("nope=1 ignored" in m for m in logged)
    path.write_text("{broken")
    assert load_config(str(path), logged.append) == DEFAULTS and "cannot read" in logged[-1]


def test_hook_refused_when_not_executable_group_writable_or_foreign(tmp_path) -> None:
    script = tmp_path / "hook"
    script.write_text("#!/bin/sh\n")
    os.chmod(script, 0o644)
    assert refusal(str(script), uid=os.getuid()) == "not executable (mode 0644)"
    os.chmod(script, 0o775)
    assert refusal(str(script), uid=os.getuid()) == "writable by group or others (mode 0775)"
    os.chmod(script, 0o755)
    assert refusal(str(script), uid=os.getuid()) is None
    assert refusal(str(script), uid=os.getuid() + 1) == f"owned by uid {os.getuid()}, not root"
    assert refusal(str(tmp_path), uid=os.getuid()) == "not a regular file"


def test_metrics_text_parses_with_the_official_parser_and_reports_sampled_counters(router, tmp_path) -> None:
    paths, model = router
    wan = model["balance"]["uplinks"][0]["interface"]
    sampled = {wan: {"rx": {"bytes": 1500, "packets": 1}, "tx": {"bytes": 60, "packets": 1}}}
    metrics = Metrics(paths, NoKernel(), str(tmp_path), 5.0, print, lambda: sampled)
    metrics.observe(parse_event_line(LINE))
    families = {f.name: f for f in text_string_to_metric_families(metrics.render())}
    assert families["multihome_events"].type == "counter"
    assert families["multihome_event_apply_duration_seconds"].type == "histogram"
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families.values() for s in f.samples}
    assert samples[("multihome_events_total", (("source", "probe"), ("state", "down")))] == 1
    assert samples[("multihome_event_apply_duration_seconds_bucket", (("le", "0.01"),))] == 0
    assert samples[("multihome_event_apply_duration_seconds_bucket", (("le", "0.025"),))] == 1
    assert samples[("multihome_uplink_state", (("state", "up"), ("uplink", "isp1")))] == 1
    assert samples[("multihome_uplink_receive_bytes_total", (("uplink", "isp1"),))] == 1500


def test_unwritable_metrics_dir_logs_one_line_and_returns(router, tmp_path) -> None:
    paths, _model = router
    logged: list = []
    metrics = Metrics(paths, NoKernel(), str(tmp_path / "missing"), 5.0, logged.append, dict)
    assert metrics.write() is False and metrics.write() is False
    assert len(logged) == 1 and "metrics: cannot write" in logged[0] and "keeps running" in logged[0]
    os.mkdir(tmp_path / "missing")
    assert metrics.write() is True and "again" in logged[-1]
    assert (tmp_path / "missing" / "multihome.prom").is_file()


def test_conntrack_line_gives_the_original_tuple_both_directions_bytes_and_the_mark() -> None:
    from router.flows import parse_conntrack_line

    line = ("tcp      6 431999 ESTABLISHED src=192.168.1.20 dst=203.0.113.10 sport=40000 dport=5001 "
            "packets=10 bytes=900 src=203.0.113.10 dst=198.51.100.2 sport=5001 dport=40000 packets=8 "
            "bytes=700 [ASSURED] mark=256 use=1")
    flow = parse_conntrack_line(line)
    assert flow == {"proto": "tcp", "state": "ESTABLISHED", "src": "192.168.1.20", "dst": "203.0.113.10",
                    "sport": "40000", "dport": "5001", "mark": 256, "bytes": 1600, "packets": 18}
    assert parse_conntrack_line("udp 17 29 src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2 mark=0")["state"] == ""


def test_user_hooks_get_the_event_environment_and_a_hanging_one_is_killed_at_its_timeout(tmp_path) -> None:
    import time

    from router.user_hooks import UserHooks

    hooks = tmp_path / "hooks.d"
    hooks.mkdir()
    out = tmp_path / "env"
    for name, body in (("10-record", f"env | grep ^MULTIHOME_ | sort > {out}\necho done\n"),
                       ("20-hang", "sleep 60\n")):
        (hooks / name).write_text("#!/bin/sh\n" + body)
        os.chmod(hooks / name, 0o700)
    logged: list = []
    started = time.monotonic()
    UserHooks(str(hooks), 1.0, logged.append, owner=os.getuid()).run_all(
        event_environment(parse_event_line(LINE)))
    assert time.monotonic() - started < 10
    assert out.read_text().split() == ["MULTIHOME_LIVE_UPLINKS=isp2", "MULTIHOME_NEW_STATE=down",
                                       "MULTIHOME_OLD_STATE=up", "MULTIHOME_REASON=probe",
                                       "MULTIHOME_UPLINK=isp1"]
    assert "10-record uplink=isp1 rc=0" in logged[0] and "output: 'done'" in logged[0]
    assert "20-hang uplink=isp1 killed after the 1s timeout" in logged[1]
