"""Health quality per uplink and target (RTT, jitter, loss, last change) from LSM's reports.

A thread of the monitor asks every running LSM for its status (SIGUSR1) every
``interval`` seconds and reads the dumps it syslogs (see lsm_capture.py, lsm_dump.py)
from ``lsm-log.sock``; it writes ``quality.json`` in the run directory, which
``multihome status`` and the metrics file read through ``read_quality``.

- ``rtt_ms``: LSM's ``avg_rtt``, the mean RTT of the answered probes among its last 100.
- ``loss_pct``: the window's probes LSM counts as lost (``timeout``, late replies
  included) out of those settled (answered or timed out; the ones still in flight wait).
- ``jitter_ms``: LSM does not report jitter. It is computed here as the mean absolute
  difference of successive ``avg_rtt`` samples (last ``JITTER_SAMPLES``), i.e. how much
  the windowed average moves, which is smaller than the per-probe jitter.
- ``last_change``: when LSM last reported the target's state changed (``link X up
  event``), as seen by this monitor.

A sample older than ``stale_after`` (an LSM that does not answer SIGUSR1, a dump that
never came, a stopped monitor) is dropped: its values read as null, never guessed.
"""
from __future__ import annotations

import collections
import os
import select
import signal
import socket
import threading
import time
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from engine.failover.probes import connection_name
from engine.failover.state import load_model
from engine.paths import Paths

from . import lsm_dump
from .lsm_capture import captured
from .snapshots import Snapshot, read_snapshot, stale_after

SOCKET = "lsm-log.sock"
FILENAME = "quality.json"
SYSTEM_LOG = "/dev/log"
JITTER_SAMPLES = 10
_SIGUSR1_BIT = 1 << (signal.SIGUSR1 - 1)
_LSM_NAMES = ("lsm", "foolsm")


def targets_of(model: dict) -> Dict[str, Tuple[str, str]]:
    """{LSM connection name: (uplink, target address)} of the reachability connections
    (failover/probes.py); the stricter degraded ones probe the same targets again."""
    out = {}
    for name, up in sorted(model["failover"]["uplinks"].items()):
        for n, target in enumerate(up["targets"], 1):
            out[connection_name(name, "probe", n, len(up["targets"]))] = (name, target)
    return out


def _answers_sigusr1(pid: int, pidfile: str) -> bool:
    """PID is the LSM that PIDFILE belongs to and it has installed its SIGUSR1 handler
    (before that, or for the shell that execs it, SIGUSR1 would kill it)."""
    try:
        with open(f"/proc/{pid}/comm", encoding="ascii", errors="replace") as fh:
            if fh.read().strip() not in _LSM_NAMES:
                return False
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            if os.fsencode(pidfile) not in fh.read().split(b"\0"):
                return False
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            caught = next((line.split()[1] for line in fh if line.startswith("SigCgt:")), "0")
        return bool(int(caught, 16) & _SIGUSR1_BIT)
    except (OSError, ValueError):
        return False


class Quality:
    def __init__(self, paths: Paths, interval: float, log: Callable[[str], None]) -> None:
        self.paths, self.interval, self.log = paths, interval, log
        self.samples: Dict[str, Deque[Tuple[float, lsm_dump.Summary]]] = {}
        # per connection: (when its state changed, None before a change was seen; the state)
        self.changes: Dict[str, Tuple[Optional[float], str]] = {}
        self.stopping = False
        self.file = Snapshot(paths, FILENAME, interval, lambda line: log(f"quality: {line}"))
        self.thread: Optional[threading.Thread] = None
        self.sock: Optional[socket.socket] = None
        self.system_log = SYSTEM_LOG if os.path.exists(SYSTEM_LOG) else None

    # ------------------------------------------------------------ LSM's side
    def lsm_argv(self, argv: List[str]) -> List[str]:
        """LSM's command line, run so that its syslog reaches this monitor's socket. The
        socket exists before any LSM starts and keeps its inode while LSMs run (their
        /dev/log is a bind mount of it)."""
        if not self._bind():
            return argv
        run = self.paths.run_dir
        return captured(argv, os.path.join(run, SOCKET), os.path.join(run, "lsm-dev"))

    def _bind(self) -> bool:
        if self.sock is not None:
            return True
        try:
            os.makedirs(self.paths.run_dir, mode=0o700, exist_ok=True)
            path = os.path.join(self.paths.run_dir, SOCKET)
            if os.path.exists(path):
                os.unlink(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(path)
            os.chmod(path, 0o600)
        except OSError as exc:
            self.log(f"quality: cannot listen for LSM's reports: {exc} (RTT, jitter and loss stay unknown)")
            return False
        self.sock = sock
        return True

    def ask(self) -> int:
        """SIGUSR1 to every LSM this monitor started (found by its pid file, which the
        wrapper writes); how many."""
        asked = 0
        for name in sorted(os.listdir(self.paths.run_dir)):
            if not (name.startswith("lsm-") and name.endswith(".pid")):
                continue
            pidfile = os.path.join(self.paths.run_dir, name)
            try:
                with open(pidfile, encoding="ascii") as fh:
                    pid = int(fh.read().strip() or 0)
                if pid > 0 and _answers_sigusr1(pid, pidfile):
                    os.kill(pid, signal.SIGUSR1)
                    asked += 1
            except (OSError, ValueError):
                continue
        return asked

    def receive(self, datagram: bytes, now: float) -> None:
        text, report = lsm_dump.split(datagram)
        if isinstance(report, lsm_dump.Summary):
            kept = self.samples.setdefault(report.connection, collections.deque(maxlen=JITTER_SAMPLES))
            kept.append((now, report))
            seen = self.changes.get(report.connection)
            if report.status and (seen is None or seen[1] != report.status):
                self.changes[report.connection] = (now if seen else None, report.status)
        elif isinstance(report, lsm_dump.Change):
            self.changes[report.connection] = (now, report.state)
        if self.system_log and text is not None and not lsm_dump.is_dump(text):
            self._relay(datagram)

    def _relay(self, datagram: bytes) -> None:
        """LSM's events and errors still reach the system log (its dumps, asked for every
        few seconds, would flood it); dropped rather than waited for when the system log
        is not reading, since this thread must keep reading for LSM."""
        try:
            assert self.sock is not None and self.system_log is not None
            self.sock.sendto(datagram, socket.MSG_DONTWAIT, self.system_log)
        except OSError:
            pass

    # ------------------------------------------------------------ bookkeeping
    def snapshot(self, model: dict, now: float) -> Dict[str, Any]:
        """What quality.json holds: one entry per target, null where nothing fresh is known."""
        limit = stale_after(self.interval)
        targets = []
        for conn, (uplink, address) in targets_of(model).items():
            fresh = [(t, s) for t, s in self.samples.get(conn, ()) if now - t <= limit]
            last = fresh[-1][1] if fresh else None
            rtts = [s.rtt_ms for _t, s in fresh if s.rtt_ms is not None]
            steps = [abs(b - a) for a, b in zip(rtts, rtts[1:])]
            changed = self.changes.get(conn)
            targets.append({
                "uplink": uplink, "target": address, "connection": conn,
                "state": last.status if last else None,
                "rtt_ms": last.rtt_ms if last else None,
                "jitter_ms": round(sum(steps) / len(steps), 3) if steps else None,
                "loss_pct": last.loss_pct if last else None,
                "probes": last.settled if last else None,
                "lost": last.timeout if last else None,
                "answered": last.replied if last else None,
                "last_change": round(changed[0], 3) if changed and changed[0] is not None else None,
                "sampled_at": round(fresh[-1][0], 3) if fresh else None,
            })
        return {"targets": targets}

    def write(self) -> None:
        self.file.write(lambda now: self.snapshot(load_model(self.paths), now))

    # ------------------------------------------------------------ thread
    def _round(self, next_ask: float) -> float:
        """Ask when due, then read what arrived; returns when to ask next."""
        assert self.sock is not None
        if time.monotonic() >= next_ask:
            self.ask()
            next_ask = time.monotonic() + self.interval
            self.write()
        ready = select.select([self.sock], [], [], max(0.0, min(0.5, next_ask - time.monotonic())))[0]
        received = False
        while ready:
            try:
                self.receive(self.sock.recv(8192, socket.MSG_DONTWAIT), time.time())
                received = True
            except BlockingIOError:
                break
        if received:
            self.write()
        return next_ask

    def _run(self) -> None:
        """Keeps reading whatever happens: LSM's syslog(3) blocks once ten datagrams wait
        unread (net.unix.max_dgram_qlen), and a blocked LSM would stop probing."""
        next_ask, failed = 0.0, ""
        while not self.stopping:
            try:
                next_ask = self._round(next_ask)
            except Exception as exc:  # reporting must never take failover down
                if repr(exc) != failed:
                    self.log(f"quality: {type(exc).__name__}: {exc} (still reading LSM's reports)")
                failed, next_ask = repr(exc), time.monotonic() + self.interval
                time.sleep(0.05)

    def start(self) -> None:
        if not self._bind():
            return
        self.thread = threading.Thread(target=self._run, name="quality", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping = True
        if self.thread is not None:
            self.thread.join(timeout=3)
        if self.sock is not None:
            self.sock.close()


# ---------------------------------------------------------------- readers
def read_quality(paths: Paths, now: Optional[float] = None) -> Dict[str, List[Dict[str, Any]]]:
    """{uplink: [target entries]} from quality.json; entries of a file the monitor stopped
    refreshing have their values nulled (the same rule as a stale sample)."""
    got = read_snapshot(paths, FILENAME, now)
    if got is None or not isinstance(got[0].get("targets"), list):
        return {}
    entries, stale = got[0]["targets"], got[1]
    out: Dict[str, List[Dict[str, Any]]] = {}
    for entry in entries:
        if stale:
            entry = {**entry, **{k: None for k in VALUES}}
        out.setdefault(entry["uplink"], []).append(entry)
    return out


VALUES = ("state", "rtt_ms", "jitter_ms", "loss_pct", "probes", "lost", "answered", "sampled_at")


def uplink_summary(targets: List[Dict[str, Any]]) -> Dict[str, Optional[float]]:
    """One uplink's figures from its targets: RTT weighted by answered probes, loss over all
    settled probes, jitter the mean of the targets'."""
    answered = [(t["rtt_ms"], t["answered"]) for t in targets if t["rtt_ms"] is not None and t["answered"]]
    settled = sum(t["probes"] or 0 for t in targets)
    lost = sum(t["lost"] or 0 for t in targets if t["probes"])
    jitters = [t["jitter_ms"] for t in targets if t["jitter_ms"] is not None]
    weight = sum(n for _r, n in answered)
    return {
        "rtt_ms": round(sum(r * n for r, n in answered) / weight, 3) if weight else None,
        "jitter_ms": round(sum(jitters) / len(jitters), 3) if jitters else None,
        "loss_pct": round(100.0 * lost / settled, 2) if settled else None,
    }
