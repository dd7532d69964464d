"""Reading LSM's status dumps (lines as LSM 1.0.4 writes them, captured on Debian 12) and
the monitor's quality bookkeeping, without a kernel: loss and RTT from the counters,
jitter from successive samples, values absent when stale or unparsable, never invented."""
from __future__ import annotations

import json
import os
import socket
import time

from router import lsm_dump
from router.quality import FILENAME, Quality, read_quality, targets_of, uplink_summary

LINE_104 = ("<30>Nov 30 09:00:20 lsm[5936]: name = isp1.1, replied = 64, waiting = 4, timeout = 36, "
            "timeout max = 0, late reply = 2, cons rcvd = 3, cons wait = 0, cons miss = 0, "
            "cons miss max = 0, avg_rtt = 0.412, seq = 1234, status = up")
# foolsm 1.0.21 (Debian 13), captured on the lab's trixie router: min_rtt and max_rtt added
LINE_FOOLSM = ("<30>Nov 30 09:24:48 foolsm[737]: name = lo1, replied = 29, waiting = 0, timeout = 0, "
               "timeout max = 0, late reply = 0, cons rcvd = 28, cons wait = 0, cons miss = 0, "
               "cons miss max = 0, min_rtt = 0.028, avg_rtt = 0.065, max_rtt = 0.097, seq = 29, status = up")
LINE_OLD = ("<30>Nov 30 09:00:20 lsm[77]: name = isp2, replied = 10, waiting = 0, timeout = 0, "
            "late reply = 0, cons rcvd = 9, cons wait = 0, cons miss = 0, avg_rtt = 0.041, seq = 10")


def test_summary_line_gives_loss_over_settled_probes_and_rtt_in_ms() -> None:
    text, report = lsm_dump.split(LINE_104.encode())
    assert text is not None and lsm_dump.is_dump(text)
    assert isinstance(report, lsm_dump.Summary)
    assert (report.connection, report.replied, report.timeout, report.late) == ("isp1.1", 64, 36, 2)
    # 36 timed out (2 of them answered late) of 64 + 36 - 2 = 98 settled probes
    assert report.settled == 98 and report.loss_pct == round(100 * 36 / 98, 2)
    assert (report.rtt_ms, report.status) == (0.412, "up")


def test_foolsm_summary_with_min_and_max_rtt_reads_the_same_fields() -> None:
    report = lsm_dump.split(LINE_FOOLSM.encode())[1]
    assert isinstance(report, lsm_dump.Summary)
    assert (report.connection, report.settled, report.loss_pct, report.rtt_ms, report.status) == (
        "lo1", 29, 0.0, 0.065, "up")


def test_older_summary_without_status_and_max_fields_still_parses() -> None:
    report = lsm_dump.split(LINE_OLD.encode())[1]
    assert isinstance(report, lsm_dump.Summary)
    assert (report.connection, report.loss_pct, report.rtt_ms, report.status) == ("isp2", 0.0, 0.041, None)


def test_no_answer_in_the_window_means_no_rtt_and_an_empty_window_no_loss() -> None:
    dead = lsm_dump.parse("name = isp1.1, replied = 0, waiting = 3, timeout = 100, late reply = 0, "
                          "avg_rtt = 0.000, seq = 9")
    assert isinstance(dead, lsm_dump.Summary) and dead.rtt_ms is None and dead.loss_pct == 100.0
    empty = lsm_dump.parse("name = x, replied = 0, waiting = 0, timeout = 0, late reply = 0, avg_rtt = 0.000")
    assert isinstance(empty, lsm_dump.Summary) and empty.loss_pct is None


def test_events_flag_rows_and_garbage() -> None:
    assert lsm_dump.parse("link isp1.2 down event") == lsm_dump.Change("isp1.2", "down")
    assert lsm_dump.parse("link isp1.2 long down event") == lsm_dump.Change("isp1.2", "long_down")
    text = lsm_dump.message(b"<30>Nov 30 09:00:20 lsm[1]: replied    1111100000")
    assert text is not None and lsm_dump.is_dump(text) and lsm_dump.parse(text) is None
    for bad in (b"", b"\xff\xfe", b"no header",
                b"<30>lsm[1]: name = a, replied = x, timeout = 1, avg_rtt = 1",
                b"<30>lsm[1]: name = a, replied = 1, timeout = 1, late reply = 5, avg_rtt = 1",
                b"<30>lsm[1]: name = a, replied = 1, timeout = 1, avg_rtt = nan"):
        assert lsm_dump.split(bad)[1] is None, bad


def feed(quality: Quality, line: str, at: float) -> None:
    quality.receive(line.encode(), at)


def test_snapshot_jitter_from_successive_samples_stale_values_absent_and_state_changes_timed(router) -> None:
    paths, model = router
    quality = Quality(paths, 1.0, lambda _line: None)
    quality.system_log = None
    conns = targets_of(model)
    name = next(c for c, (up, _t) in conns.items() if up == "isp1")
    for at, rtt in ((100.0, 1.0), (101.0, 1.5), (102.0, 1.0), (103.0, 2.0)):
        feed(quality, f"<30>lsm[1]: name = {name}, replied = 90, waiting = 0, timeout = 10, "
                      f"late reply = 0, avg_rtt = {rtt}, seq = 1, status = up", at)
    feed(quality, f"<30>lsm[1]: link {name} down event", 103.5)
    snap = quality.snapshot(model, 104.0)
    entry = next(t for t in snap["targets"] if t["connection"] == name)
    assert entry["jitter_ms"] == round((0.5 + 0.5 + 1.0) / 3, 3)
    assert (entry["rtt_ms"], entry["loss_pct"], entry["probes"]) == (2.0, 10.0, 100)
    assert entry["last_change"] == 103.5
    others = [t for t in snap["targets"] if t["connection"] != name]
    assert others and all(t["rtt_ms"] is None and t["state"] is None for t in others)
    # nothing new for longer than 2 * interval + 3 s: absent, not the last value
    late = next(t for t in quality.snapshot(model, 110.0)["targets"] if t["connection"] == name)
    assert late["rtt_ms"] is None and late["loss_pct"] is None and late["jitter_ms"] is None
    assert late["last_change"] == 103.5  # an event is history, not a measurement


def test_read_quality_nulls_a_file_the_monitor_stopped_writing_and_ignores_a_broken_one(router) -> None:
    paths, model = router
    quality = Quality(paths, 1.0, lambda _line: None)
    name = next(iter(targets_of(model)))
    feed(quality, f"<30>lsm[1]: name = {name}, replied = 50, waiting = 0, timeout = 50, late reply = 0, "
                  "avg_rtt = 3.0, status = up", 1000.0)
    os.makedirs(paths.run_dir)
    path = os.path.join(paths.run_dir, FILENAME)
    with open(path, "w") as fh:
        json.dump({**quality.snapshot(model, 1000.0), "written": 1000.0, "interval": 1.0}, fh)
    fresh = read_quality(paths, 1001.0)
    uplink = targets_of(model)[name][0]
    assert uplink_summary(fresh[uplink])["loss_pct"] == 50.0
    stale = read_quality(paths, 1100.0)
    assert all(t["rtt_ms"] is None and t["loss_pct"] is None for ts in stale.values() for t in ts)
    assert uplink_summary(stale[uplink]) == {"rtt_ms": None, "jitter_ms": None, "loss_pct": None}
    with open(path, "w") as fh:
        fh.write("{not json")
    assert read_quality(paths, 1001.0) == {}
    os.unlink(path)
    assert read_quality(paths) == {}


def test_uplink_summary_weights_rtt_by_answered_probes_and_pools_loss() -> None:
    targets = [{"rtt_ms": 1.0, "answered": 90, "probes": 100, "lost": 10, "jitter_ms": 0.2},
               {"rtt_ms": 4.0, "answered": 30, "probes": 100, "lost": 70, "jitter_ms": None},
               {"rtt_ms": None, "answered": None, "probes": None, "lost": None, "jitter_ms": None}]
    assert uplink_summary(targets) == {"rtt_ms": 1.75, "jitter_ms": 0.2, "loss_pct": 40.0}


def test_sigusr1_goes_only_to_an_lsm_that_catches_it_and_garbage_on_the_socket_is_ignored(router) -> None:
    paths, _model = router
    quality = Quality(paths, 1.0, lambda _line: None)
    quality.system_log = None
    assert quality.lsm_argv(["/usr/sbin/lsm", "--pidfile", "x"])[-3:] == ["/usr/sbin/lsm", "--pidfile", "x"]
    # this test process (SIGUSR1 would kill it), a dead pid, garbage: nobody is signalled
    for name, content in (("lsm-isp1.pid", str(os.getpid())), ("lsm-isp2.pid", "999999999"),
                          ("lsm-isp3.pid", "not a pid")):
        with open(os.path.join(paths.run_dir, name), "w") as fh:
            fh.write(content)
    assert quality.ask() == 0
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    for junk in (b"", b"\x00" * 5000, b"<30>lsm[1]: name = ", b"<999>garbage"):
        sender.sendto(junk, os.path.join(paths.run_dir, "lsm-log.sock"))
    quality._round(time.monotonic() + 60)
    assert quality.samples == {} and quality.changes == {}
    assert all(t["rtt_ms"] is None for ts in read_quality(paths).values() for t in ts)
    quality.stop()
