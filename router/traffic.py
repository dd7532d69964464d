"""Bytes each uplink carried in the last minute, for ``multihome status``.

The kernel counts every interface's bytes (links.py); a counter only says how many since
the interface came up, so the monitor samples the uplinks' counters every interval, keeps
a minute of samples and writes the difference to ``traffic.json`` (snapshots.py). The
metrics file reports the latest sample's counters (``Traffic.counters``): one read of the
interfaces per interval feeds both.
"""
from __future__ import annotations

import collections
import threading
from typing import Callable, Deque, Dict, Optional, Tuple

from engine.failover.state import load_model
from engine.paths import Paths
from engine.runner import Runner

from .links import interface_counters
from .snapshots import Snapshot, read_snapshot

FILENAME = "traffic.json"
WINDOW_S = 60.0


class Traffic:
    def __init__(self, paths: Paths, runner: Runner, interval: float, log: Callable[[str], None]) -> None:
        self.paths, self.runner, self.interval, self.log = paths, runner, interval, log
        self.samples: Dict[str, Deque[Tuple[float, int, int]]] = {}
        self.latest: Optional[Dict[str, dict]] = None
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread: Optional[threading.Thread] = None
        self.file = Snapshot(paths, FILENAME, interval, lambda line: log(f"traffic: {line}"))

    def sample(self, interfaces: Dict[str, str], counters: Dict[str, dict], now: float) -> Dict[str, dict]:
        """Add one sample per uplink ({uplink: interface}) from COUNTERS (`ip -s link`);
        return each uplink's bytes since its oldest sample of the last minute (an absent or
        re-created interface starts again)."""
        out: Dict[str, dict] = {}
        for uplink, interface in interfaces.items():
            stats = counters.get(interface) or {}
            kept = self.samples.setdefault(uplink, collections.deque())
            try:
                got = (int(stats["rx"]["bytes"]), int(stats["tx"]["bytes"]))
            except (KeyError, TypeError, ValueError):
                kept.clear()
                continue
            if kept and (got[0] < kept[-1][1] or got[1] < kept[-1][2]):
                kept.clear()  # counters went back: a new interface of the same name
            kept.append((now, *got))
            while now - kept[0][0] > WINDOW_S:
                kept.popleft()
            first = kept[0]
            if now > first[0]:
                out[uplink] = {"rx": got[0] - first[1], "tx": got[1] - first[2],
                               "seconds": round(now - first[0], 1)}
        return out

    def counters(self) -> Dict[str, dict]:
        """Every interface's counters as of the latest sample (read now if none yet)."""
        with self.lock:
            if self.latest is None:
                self.latest = interface_counters(self.runner)
            return self.latest

    def write(self) -> None:
        def make(now: float) -> Dict[str, dict]:
            model = load_model(self.paths)
            interfaces = {u["name"]: u["interface"] for u in model["balance"]["uplinks"]}
            counters = interface_counters(self.runner)
            with self.lock:
                self.latest = counters
            return {"uplinks": self.sample(interfaces, counters, now)}

        self.file.write(make)

    def _run(self) -> None:
        while not self.stopping.wait(self.interval if self.samples else 0):
            self.write()

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="traffic", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=3)


def read_traffic(paths: Paths, now: Optional[float] = None) -> Dict[str, dict]:
    """{uplink: {"rx", "tx", "seconds"}} from traffic.json; {} when it is missing, broken or
    stale (the monitor stopped: an old figure is no figure)."""
    got = read_snapshot(paths, FILENAME, now)
    if got is None or got[1] or not isinstance(got[0].get("uplinks"), dict):
        return {}
    return dict(got[0]["uplinks"])
