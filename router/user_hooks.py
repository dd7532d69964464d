"""The administrator's scripts in ``hooks.d`` run on every effective state change
(like mwan3's ``mwan3.user``).

Each executable runs after the change is applied, from a worker thread of the monitor,
so a slow or hanging script never delays failover; each has a timeout (its process
group is killed after it) and its output goes to the event log. A file that is not a
regular file, not owned by root, writable by group or others, or not executable is
skipped with a log line and never run. The event reaches the script as environment:

  MULTIHOME_UPLINK        the uplink that changed
  MULTIHOME_OLD_STATE     its effective state before (up/down)
  MULTIHOME_NEW_STATE     its effective state now
  MULTIHOME_REASON        what reported the change: probe, carrier or admin (drain/undrain)
  MULTIHOME_LIVE_UPLINKS  comma-separated uplinks taking new flows ("none" if none)
"""
from __future__ import annotations

import contextlib
import os
import queue
import signal
import stat
import subprocess
import threading
import time
from typing import Callable, Dict, List, Optional

from .events import LoggedEvent

MAX_OUTPUT = 2000


def event_environment(event: LoggedEvent) -> Dict[str, str]:
    return {"MULTIHOME_UPLINK": event.uplink, "MULTIHOME_OLD_STATE": event.old,
            "MULTIHOME_NEW_STATE": event.new, "MULTIHOME_REASON": event.source,
            "MULTIHOME_LIVE_UPLINKS": event.live}


def refusal(path: str, uid: int = 0) -> Optional[str]:
    """Why ``path`` must not run (None: it may)."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"cannot stat: {exc.strerror}"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_uid != uid:
        return f"owned by uid {st.st_uid}, not root"
    if st.st_mode & 0o022:
        return f"writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
    if not st.st_mode & stat.S_IXUSR:
        return f"not executable (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


class UserHooks:
    def __init__(self, directory: str, timeout: float, log: Callable[[str], None], owner: int = 0) -> None:
        self.directory, self.timeout, self.log, self.owner = directory, timeout, log, owner
        self.pending: queue.Queue = queue.Queue()
        self.thread: Optional[threading.Thread] = None
        self.running: Optional[subprocess.Popen] = None
        self.stopping = False

    def scripts(self) -> List[str]:
        try:
            names = sorted(n for n in os.listdir(self.directory) if not n.startswith("."))
        except FileNotFoundError:
            return []
        except OSError as exc:
            self.log(f"user hooks: cannot list {self.directory}: {exc.strerror}")
            return []
        runnable = []
        for name in names:
            path = os.path.join(self.directory, name)
            why = refusal(path, self.owner)
            if why:
                self.log(f"user hook {path} skipped: {why}")
            else:
                runnable.append(path)
        return runnable

    def run_one(self, path: str, env: Dict[str, str]) -> None:
        started = time.monotonic()
        proc = subprocess.Popen([path], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env={**os.environ, **env}, cwd="/",
                                start_new_session=True)
        self.running = proc
        try:
            out = proc.communicate(timeout=self.timeout)[0]
            outcome = f"rc={proc.returncode}"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out = proc.communicate()[0]
            outcome = f"killed after the {self.timeout:g}s timeout"
        self.running = None
        text = out.decode("utf-8", "replace").strip().replace("\n", " | ")[:MAX_OUTPUT]
        self.log(f"user hook {path} uplink={env['MULTIHOME_UPLINK']} {outcome} "
                 f"ms={(time.monotonic() - started) * 1000:.0f}" + (f" output: {text!r}" if text else ""))

    def run_all(self, env: Dict[str, str]) -> None:
        """Every runnable script, in name order, one after the other."""
        for path in self.scripts():
            if self.stopping:
                return
            try:
                self.run_one(path, env)
            except Exception as exc:  # one broken script must not end the worker for the others
                self.log(f"user hook {path} failed: {type(exc).__name__}: {exc}")

    def submit(self, event: LoggedEvent) -> None:
        """Queue the scripts for one effective change; returns at once."""
        if event.changed:
            self.pending.put(event_environment(event))

    def _loop(self) -> None:
        while True:
            env = self.pending.get()
            if env is None:
                return
            self.run_all(env)

    def start(self) -> None:
        self.thread = threading.Thread(target=self._loop, name="user-hooks", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """No further scripts; the one running now is killed (the monitor is going away)."""
        self.stopping = True
        self.pending.put(None)
        proc = self.running
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
