"""The failover monitor: LSM for upstream reachability plus a kernel event watcher.

LSM probes targets through each uplink and runs the hook on a change; it does not see
carrier loss quickly, so ``ip -o monitor link address route`` is read too: a lost
carrier is handled in-process within milliseconds, and an uplink whose interface
appears, whose address changes or whose table loses routes is repaired (see repair.py).
An uplink whose interface does not exist is absent: down, no LSM, until it appears.
``run`` supervises all of it until SIGTERM; ``start_detached`` runs it in the background
for hosts without systemd.
"""
from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from typing import Dict, List, Optional

from engine.errors import EngineError
from engine.failover.state import forget_targets, handle_event, load_model, log_event, uplink_names
from engine.hook.protocol import MAX_REQUEST
from engine.hook.protocol import decode as decode_request
from engine.paths import Paths
from engine.runner import LocalRunner, Runner

from .hook import process as process_hook_event
from .kernel_events import WATCH, LineReader, classify
from .links import read_carriers
from .lsmbinary import find_lsm
from .operability import Operability
from .repair import Repairs

IDENT = "multihome-monitor"
_BLOCK = re.compile(r"^(defaults|connection|group)\s*\{(.*?)^\}", re.M | re.S)
_NAME = re.compile(r"^\s*name=(\S+)", re.M)


def split_lsm_config(text: str) -> Dict[str, str]:
    """The role's LSM config as one config per uplink (connections ``<uplink>.<n>`` and
    the group ``<uplink>``). One LSM process sends at most one probe every 20-30 ms in
    all, so a single process for every uplink's targets stretches each target's interval
    (four targets at 50 ms were probed every 100 ms); one process per uplink keeps it."""
    blocks = _BLOCK.findall(text)
    defaults = "".join(f"{kind} {{{body}}}\n" for kind, body in blocks if kind == "defaults")
    out: Dict[str, str] = {}
    for kind, body in blocks:
        found = _NAME.search(body)
        if kind == "defaults" or not found:
            continue
        uplink = found.group(1).split(".", 1)[0]
        out[uplink] = out.get(uplink, defaults) + f"\n{kind} {{{body}}}\n"
    return out


class Monitor:
    def __init__(self, paths: Paths, runner: Optional[Runner] = None) -> None:
        self.paths = paths
        self.runner = runner or LocalRunner()
        self.model = load_model(paths)
        self.names = uplink_names(self.model)
        self.iface_of = {u["name"]: u["interface"] for u in self.model["balance"]["uplinks"]}
        self.uplink_of = {v: k for k, v in self.iface_of.items()}
        self.carrier: Dict[str, bool] = {}
        self.lsm: Dict[str, subprocess.Popen] = {}
        self.watch: Optional[subprocess.Popen] = None
        self.stopping = False
        self.reload = False
        self.server: Optional[socket.socket] = None
        # issue 15: metrics file and user hooks, fed each applied event (router/operability.py)
        self.ops = Operability(paths, self.runner, lambda line: log_event(paths, line, IDENT))
        self.repairs = Repairs(self)

    def _event(self, uplink: str, up: bool) -> None:
        state = "up" if up else "down"
        try:
            result = handle_event(self.model, uplink, "carrier", state, time.time(), self.paths, self.runner)
            log_event(self.paths, result.line(), IDENT)
            self.ops.after_event(result.line())
        except EngineError as exc:
            log_event(self.paths, f"uplink={uplink} source=carrier state={state} failed: {exc}", IDENT)

    def sync_carriers(self) -> None:
        found = read_carriers(self.runner)
        for name in self.names:
            self.repairs.set_present(name, self.iface_of[name] in found)
            up = found.get(self.iface_of[name], False)
            if self.carrier.get(name) != up:
                self.carrier[name] = up
                self._event(name, up)

    def on_line(self, line: str) -> None:
        event = classify(line, self.uplink_of, self.repairs.uplink_of_table)
        if event is None:
            return
        name = event.uplink
        if event.kind == "link" and not event.exists:
            self.repairs.set_present(name, False)
        elif event.kind == "link" and not self.repairs.present.get(name, True):
            self.repairs.set_present(name, True)
        if event.kind == "link" and self.carrier.get(name) != event.carrier:
            self.carrier[name] = bool(event.carrier)
            if event.carrier:
                # Up only once the uplink's table is repaired: see Repairs.run.
                self.repairs.schedule(name, "carrier", carrier_up=True)
            else:
                self._event(name, False)
        elif event.kind != "link" or event.carrier:
            self.repairs.schedule(name, event.kind)

    def _start_lsm(self, only: Optional[str] = None) -> None:
        if not self.model["failover"].get("enabled", True):
            return
        lsm = find_lsm().path
        os.makedirs(self.paths.run_dir, mode=0o700, exist_ok=True)
        with open(self.paths.lsm_conf, encoding="utf-8") as fh:
            configs = split_lsm_config(fh.read())
        for uplink, text in sorted(configs.items()):
            if (only is not None and uplink != only) or not self.repairs.present.get(uplink, True):
                continue
            conf = os.path.join(self.paths.run_dir, f"lsm-{uplink}.conf")
            fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            pid = os.path.join(self.paths.run_dir, f"lsm-{uplink}.pid")
            forget_targets(self.paths, uplink)  # the new LSM reports every target again
            self.lsm[uplink] = subprocess.Popen(
                self.ops.quality.lsm_argv([lsm, "--no-fork", "--config", conf, "--pidfile", pid]),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )

    def _listen(self) -> socket.socket:
        """The hook's fast path (see engine/hook/protocol.py): root only, in a 0700 directory."""
        os.makedirs(self.paths.run_dir, mode=0o700, exist_ok=True)
        os.chmod(self.paths.run_dir, 0o700)
        path = os.path.join(self.paths.run_dir, "hook.sock")
        if os.path.exists(path):
            os.unlink(path)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        os.chmod(path, 0o600)
        server.listen(64)
        return server

    def serve_hook(self, server: socket.socket) -> None:
        """Answer one hook: validate, apply and log exactly as the hook itself would."""
        conn, _peer = server.accept()
        with conn:
            conn.settimeout(2.0)
            try:
                uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1]
                data = b""
                while len(data) <= MAX_REQUEST:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                if uid != 0 or len(data) > MAX_REQUEST:
                    raise PermissionError(f"uid {uid}, {len(data)} bytes")
                argv, started = decode_request(data)
            except (OSError, ValueError) as exc:
                # No answer: the hook falls back to handling (and refusing) it itself.
                log_event(self.paths, f"hook request not understood: {type(exc).__name__}", IDENT)
                return
            rc, line = process_hook_event(argv, self.paths, self.runner, started, via=" via=monitor")
            with contextlib.suppress(OSError):  # the hook gave up waiting; it is applied
                conn.sendall(f"{rc}\n{line}".encode("utf-8", "replace"))
            self.ops.after_event(line)

    def restart_lsm(self, uplink: str) -> None:
        """Stop and start one uplink's LSM (its device or source address changed)."""
        self._stop_child(self.lsm.pop(uplink, None))
        self._start_lsm(only=uplink)

    def stop_lsm(self, uplink: str) -> None:
        self._stop_child(self.lsm.pop(uplink, None))

    def _stop_child(self, proc: Optional[subprocess.Popen]) -> None:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGHUP, self._on_hup)
        if self.model["failover"].get("enabled", True):
            find_lsm()  # no LSM: fail now, before starting anything
        # Watch first so no link event between the initial read and the watch is lost.
        self.watch = subprocess.Popen(WATCH, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert self.watch.stdout is not None
        lines = LineReader(self.watch.stdout.fileno())
        # LSM starts with every connection "unknown" and reports each one's first verdict
        # (unknown_up_notify), so the recorded probe states stand until LSM has seen.
        self.sync_carriers()
        self.server = self._listen()
        self._start_lsm()
        self.ops.start()
        log_event(self.paths, f"monitor started pid={os.getpid()} uplinks={','.join(self.names)}", IDENT)
        lsm_restarts: List[float] = []
        while not self.stopping:
            if self.reload:
                self.reload = False
                for proc in self.lsm.values():
                    self._stop_child(proc)
                self.lsm = {}
                self.model = load_model(self.paths)
                self._start_lsm()
            try:
                ready = select.select([lines.fd, self.server], [], [], self.repairs.timeout(1.0))[0]
            except InterruptedError:
                continue
            if self.server in ready:
                self.serve_hook(self.server)
            if lines.fd in ready:
                for line in lines.read_lines():
                    self.on_line(line)
                if lines.eof:
                    raise EngineError("ip monitor exited")
            self.repairs.run_due()
            for uplink, proc in list(self.lsm.items()):
                if proc.poll() is not None and not self.stopping and self.repairs.present.get(uplink, True):
                    lsm_restarts = [t for t in lsm_restarts if time.time() - t < 60] + [time.time()]
                    log_event(self.paths, f"lsm ({uplink}) exited rc={proc.returncode}; restarting", IDENT)
                    time.sleep(min(5.0, 0.2 * len(lsm_restarts)))
                    self._start_lsm(only=uplink)
        self.ops.stop()
        for proc in self.lsm.values():
            self._stop_child(proc)
        self._stop_child(self.watch)
        self.server.close()
        os.unlink(os.path.join(self.paths.run_dir, "hook.sock"))
        log_event(self.paths, "monitor stopped", IDENT)
        return 0

    def _on_signal(self, *_args: object) -> None:
        self.stopping = True

    def _on_hup(self, *_args: object) -> None:
        self.reload = True


def pidfile(paths: Paths) -> str:
    return os.path.join(paths.run_dir, "monitor.pid")


def running_pid(paths: Paths) -> Optional[int]:
    try:
        with open(pidfile(paths), encoding="ascii") as fh:
            pid = int(fh.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            if b"multihome" not in fh.read():
                return None
        return pid
    except (OSError, ValueError):
        return None


def stop(paths: Paths, timeout: float = 5.0) -> bool:
    pid = running_pid(paths)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and running_pid(paths) == pid:
        time.sleep(0.05)
    return True


def start_detached(paths: Paths, argv: List[str], log_path: str) -> int:
    """Run ``argv`` (the CLI's foreground monitor) as a daemon; return its pid."""
    os.makedirs(paths.run_dir, exist_ok=True)
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # first child: new session, fork again so the daemon is not a session leader
        os.close(read_fd)
        os.setsid()
        grandchild = os.fork()
        if grandchild:
            os.write(write_fd, str(grandchild).encode())
            os._exit(0)
        os.close(write_fd)
        devnull = os.open(os.devnull, os.O_RDWR)
        log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        os.dup2(devnull, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.closerange(3, 1024)
        os.chdir("/")
        with open(pidfile(paths), "w", encoding="ascii") as fh:
            fh.write(f"{os.getpid()}\n")
        try:
            os.execv(sys.executable, [sys.executable, *argv])
        finally:
            os._exit(127)
    os.close(write_fd)
    os.waitpid(pid, 0)
    with os.fdopen(read_fd) as fh:
        return int(fh.read() or 0)
