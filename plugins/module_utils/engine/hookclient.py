"""The hook's fast path: hand the event to the running monitor over its unix socket.

The monitor has the engine loaded already, so the hook process needs only this module
(standard library socket and json) instead of importing the whole engine. The monitor
validates, applies and logs exactly as the hook would; when it is not running, the
hook handles the event itself (``cli_hook.main``).
"""
from __future__ import annotations

import json
import os
import socket
import time
from typing import Optional, Sequence

# Paths.default() gives the same path; not imported here to keep the hook's start-up small.
SOCKET = "/run/netops-multihome/hook.sock"
MAX_REQUEST = 16384
TIMEOUT_S = 10.0


def socket_path() -> str:
    return os.environ.get("MULTIHOME_ROOT", "") + SOCKET


def process_started() -> float:
    """Wall-clock time this process started (so the monitor can log the whole latency)."""
    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime", encoding="ascii") as fh:
            uptime = float(fh.read().split()[0])
        return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.time()


def ask(argv: Sequence[str], path: Optional[str] = None) -> Optional[dict]:
    """{"rc", "line"} from the monitor, or None when no monitor answers (then the caller
    handles the event itself). The arguments are sent as data, never interpreted here."""
    request = json.dumps({"argv": list(argv), "started": process_started()}).encode() + b"\n"
    if len(request) > MAX_REQUEST:
        return None  # the in-process path refuses and logs it
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT_S)
    try:
        sock.connect(path or socket_path())
    except OSError:
        sock.close()
        return None
    try:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        reply = json.loads(data.decode())
        if not isinstance(reply, dict) or not isinstance(reply.get("rc"), int):
            return None
        return reply
    except (OSError, ValueError):
        # Connected but no usable answer: the monitor may have applied the event, so
        # applying it again in-process is harmless (events are idempotent and ordered).
        return None
    finally:
        sock.close()
