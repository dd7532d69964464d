"""Prometheus textfile (node_exporter's textfile collector) written by the monitor.

Rewritten atomically every ``interval`` seconds and after every event, from a thread of
its own so counting flows on a busy router never delays the failover path. Series:

  multihome_uplink_state{uplink,state}              1 for its state (up/down/drained/degraded), else 0
  multihome_uplink_up{uplink}                       1 when in rotation for new flows
  multihome_uplink_effective_weight{uplink}         its weight in the balance now (0 when out)
  multihome_uplink_flows{uplink}                    conntrack entries carrying its mark
  multihome_uplink_since_change_seconds{uplink}     seconds since its state last changed
  multihome_uplink_{receive,transmit}_{bytes,packets}_total{uplink}   its interface's counters
  multihome_uplink_rtt_seconds{uplink}, multihome_target_rtt_seconds{uplink,target}   LSM's avg_rtt
  multihome_uplink_jitter_seconds{uplink}, multihome_target_jitter_seconds{uplink,target}
  multihome_uplink_loss_ratio{uplink}, multihome_target_loss_ratio{uplink,target}      0..1, LSM's window
  multihome_events_total{source,state}              events handled since the monitor started
  multihome_event_apply_duration_seconds            histogram of the time to record and apply one event
  multihome_metrics_last_write_timestamp_seconds
"""
from __future__ import annotations

import os
import tempfile
import threading
import time
from typing import Callable, Dict, List, Optional

from engine.failover.state import load_model, uplink_state
from engine.paths import Paths
from engine.runner import Runner

from .events import LoggedEvent
from .quality import read_quality, uplink_summary
from .reasons import reason_of
from .status import count_flows

FILENAME = "multihome.prom"
STATES = ("up", "down", "drained", "degraded")
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# what the monitor handles (a drain is the operator's command, shown by multihome_uplink_state)
EVENT_KINDS = tuple((source, state) for source in ("probe", "carrier", "degraded")
                    for state in ("up", "down"))
# (series, field in quality.py, factor to the base unit, help): absent when LSM has not said
_QUALITY = (("rtt_seconds", "rtt_ms", 0.001, "Mean RTT of the probes LSM's window answered"),
            ("jitter_seconds", "jitter_ms", 0.001, "Mean change between successive RTT samples"),
            ("loss_ratio", "loss_pct", 0.01, "Share of the settled probes of LSM's window lost"))
_IFACE_STATS = (("receive_bytes", "rx", "bytes"), ("transmit_bytes", "tx", "bytes"),
                ("receive_packets", "rx", "packets"), ("transmit_packets", "tx", "packets"))


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Family:
    """One metric family: HELP, TYPE and its samples, in the text exposition format."""

    def __init__(self, name: str, kind: str, text: str) -> None:
        self.name, self.lines = name, [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]

    def add(self, value: float, suffix: str = "", **labels: str) -> None:
        spelled = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
        self.lines.append(f"{self.name}{suffix}{{{spelled}}} {value!r}" if spelled
                          else f"{self.name}{suffix} {value!r}")


class Metrics:
    def __init__(self, paths: Paths, runner: Runner, directory: str, interval: float,
                 log: Callable[[str], None], counters: Callable[[], Dict[str, dict]]) -> None:
        """``counters``: every interface's counters (``Traffic.counters``, sampled once per
        interval for both)."""
        self.paths, self.runner, self.log, self.counters = paths, runner, log, counters
        self.directory, self.interval = directory, interval
        self.events: Dict[tuple, int] = {kind: 0 for kind in EVENT_KINDS}
        self.buckets: List[int] = [0] * len(BUCKETS)
        self.apply_count, self.apply_sum = 0, 0.0
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = False
        self.last_error: Optional[str] = None
        self.thread: Optional[threading.Thread] = None

    def observe(self, event: LoggedEvent) -> None:
        with self.lock:
            key = (event.source, event.state)
            self.events[key] = self.events.get(key, 0) + 1
            if event.apply_seconds is not None:
                self.apply_count += 1
                self.apply_sum += event.apply_seconds
                for i, bound in enumerate(BUCKETS):
                    if event.apply_seconds <= bound:
                        self.buckets[i] += 1
        self.wake.set()

    def render(self) -> str:
        model = load_model(self.paths)
        fo = model["failover"]["uplinks"]
        uplinks = model["balance"]["uplinks"]
        marks = {u["name"]: int(fo[u["name"]]["mark"]) for u in uplinks}
        flows = count_flows(self.runner, marks, int(model["balance"].get("mark_mask") or 0xFF00))
        counters = self.counters()
        now = time.time()
        fams = {name: Family(f"multihome_{name}", kind, text) for name, kind, text in (
            ("uplink_state", "gauge", "1 for the uplink's state (up, down, drained, degraded), else 0."),
            ("uplink_up", "gauge", "1 when the uplink takes new flows."),
            ("uplink_effective_weight", "gauge", "The uplink's weight in the balance now (0 when out)."),
            ("uplink_flows", "gauge", "Conntrack entries carrying the uplink's mark."),
            ("uplink_since_change_seconds", "gauge", "Seconds since the uplink's state last changed."),
            *((f"uplink_{n}_total", "counter", f"The uplink interface's {d} {u}.")
              for n, d, u in _IFACE_STATS),
            *((f"{scope}_{n}", "gauge", f"{text}{over}.")
              for scope, over in (("uplink", ", over the uplink's targets"), ("target", ""))
              for n, _f, _x, text in _QUALITY),
        )}
        quality = read_quality(self.paths, now)
        for up in uplinks:
            name = up["name"]
            state, since, detail = uplink_state(self.paths, name)
            shown = {"admin-drained": "drained", "degraded": "degraded"}.get(reason_of(state, detail), state)
            for value in STATES:
                fams["uplink_state"].add(float(value == shown), uplink=name, state=value)
            fams["uplink_up"].add(float(state == "up"), uplink=name)
            weight = up.get("weight", 1) if state == "up" else 0
            fams["uplink_effective_weight"].add(float(weight), uplink=name)
            fams["uplink_flows"].add(float(flows[name]), uplink=name)
            if since is not None:
                fams["uplink_since_change_seconds"].add(round(max(0.0, now - since), 3), uplink=name)
            self._quality(fams, name, quality.get(name, []))
            stats = counters.get(up["interface"])
            for metric, direction, unit in _IFACE_STATS:
                if stats and direction in stats:
                    fams[f"uplink_{metric}_total"].add(float(stats[direction].get(unit, 0)), uplink=name)
        events = Family("multihome_events_total", "counter",
                        "Monitor events handled, by source and reported state.")
        hist = Family("multihome_event_apply_duration_seconds", "histogram",
                      "Time to record one event and bring the balancing in line.")
        with self.lock:
            for (source, state), count in sorted(self.events.items()):
                events.add(float(count), source=source, state=state)
            for bound, count in zip(BUCKETS, self.buckets):
                hist.add(float(count), "_bucket", le=repr(bound))
            hist.add(float(self.apply_count), "_bucket", le="+Inf")
            hist.add(round(self.apply_sum, 6), "_sum")
            hist.add(float(self.apply_count), "_count")
        stamp = Family("multihome_metrics_last_write_timestamp_seconds", "gauge",
                       "When this file was written (seconds since the epoch).")
        stamp.add(round(now, 3))
        return "\n".join(line for fam in (*fams.values(), events, hist, stamp) for line in fam.lines) + "\n"

    @staticmethod
    def _quality(fams: Dict[str, Family], uplink: str, targets: List[dict]) -> None:
        summary = uplink_summary(targets)
        for series, field, factor, _text in _QUALITY:
            if summary[field] is not None:
                fams[f"uplink_{series}"].add(round(summary[field] * factor, 9), uplink=uplink)
            for target in targets:
                if target[field] is not None:
                    fams[f"target_{series}"].add(round(target[field] * factor, 9), uplink=uplink,
                                                 target=target["target"])

    def write(self) -> bool:
        """Render and replace the file; on failure one log line per distinct error."""
        try:
            text = self.render()
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".multihome.prom.")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(text)
                os.chmod(tmp, 0o644)
                os.replace(tmp, os.path.join(self.directory, FILENAME))
            except BaseException:
                os.unlink(tmp)
                raise
        except Exception as exc:  # a metrics failure must never stop the monitor
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            error = f"metrics: cannot write {os.path.join(self.directory, FILENAME)}: {why}"
            if error != self.last_error:
                self.log(error + " (the monitor keeps running; retrying every "
                         f"{self.interval:g}s)")
            self.last_error = error
            return False
        if self.last_error:
            self.log(f"metrics: writing {os.path.join(self.directory, FILENAME)} again")
        self.last_error = None
        return True

    def _loop(self) -> None:
        while not self.stopping:
            self.write()
            self.wake.wait(self.interval)
            self.wake.clear()

    def start(self) -> None:
        self.thread = threading.Thread(target=self._loop, name="metrics", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
