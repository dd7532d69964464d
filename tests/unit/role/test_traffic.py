"""Bytes per uplink over the last minute from interface counters, without a kernel: the
window, an interface that is re-created or absent, and a file the monitor stopped writing."""
from __future__ import annotations

import json
import os

from router.traffic import FILENAME, WINDOW_S, Traffic, read_traffic


class FakePaths:
    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir


def counters(rx: int, tx: int) -> dict:
    return {"wan1": {"rx": {"bytes": rx, "packets": 1}, "tx": {"bytes": tx, "packets": 1}}}


def test_bytes_are_counted_over_the_last_minute_only(tmp_path) -> None:
    traffic = Traffic(FakePaths(str(tmp_path)), None, 5.0, print)
    uplinks = {"isp1": "wan1"}
    assert traffic.sample(uplinks, counters(1000, 500), 0.0) == {}  # one sample: no interval yet
    got = traffic.sample(uplinks, counters(3000, 900), 30.0)
    assert got == {"isp1": {"rx": 2000, "tx": 400, "seconds": 30.0}}
    # the sample at 0 s is more than WINDOW_S old at 70 s: counted from the one at 30 s
    got = traffic.sample(uplinks, counters(9000, 1900), 70.0)
    assert got == {"isp1": {"rx": 6000, "tx": 1000, "seconds": 40.0}} and WINDOW_S == 60.0


def test_a_recreated_or_absent_interface_starts_counting_again(tmp_path) -> None:
    traffic = Traffic(FakePaths(str(tmp_path)), None, 5.0, print)
    uplinks = {"isp1": "wan1"}
    traffic.sample(uplinks, counters(5000, 5000), 0.0)
    assert traffic.sample(uplinks, counters(100, 50), 5.0) == {}  # counters went back
    assert traffic.sample(uplinks, counters(300, 80), 10.0) == {"isp1": {"rx": 200, "tx": 30, "seconds": 5.0}}
    assert traffic.sample(uplinks, {}, 15.0) == {}
    assert traffic.sample(uplinks, counters(400, 90), 20.0) == {}


def test_read_traffic_gives_nothing_for_a_stale_or_broken_file(tmp_path) -> None:
    paths = FakePaths(str(tmp_path))
    path = os.path.join(tmp_path, FILENAME)
    moved = {"isp1": {"rx": 1, "tx": 2, "seconds": 5.0}}
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({"written": 1000.0, "interval": 5.0, "uplinks": moved}, fh)
    assert read_traffic(paths, now=1010.0) == moved
    assert read_traffic(paths, now=1014.0) == {}  # older than 2 intervals + 3 s: the monitor stopped
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("{")
    assert read_traffic(paths, now=1001.0) == {}
    os.unlink(path)
    assert read_traffic(paths) == {}


class CountingRunner:
    """`ip -j -s link show` answered with wan1's counters, each read counted."""

    def __init__(self) -> None:
        self.reads = 0

    def run(self, argv, stdin=None, check=True):
        from engine.runner import CmdResult

        self.reads += 1
        links = [{"ifname": "wan1", "stats64": counters(100 * self.reads, 7)["wan1"]}]
        return CmdResult(0, json.dumps(links), "")


def test_metrics_get_the_latest_sample_without_reading_the_interfaces_again(router) -> None:
    paths, _model = router
    runner = CountingRunner()
    traffic = Traffic(paths, runner, 5.0, print)
    assert traffic.counters()["wan1"]["rx"]["bytes"] == 100  # no sample yet: read once
    traffic.write()
    assert traffic.counters()["wan1"]["rx"]["bytes"] == 200
    assert traffic.counters()["wan1"]["rx"]["bytes"] == 200 and runner.reads == 2
