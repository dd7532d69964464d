"""The hook <-> monitor wire protocol: the hook's side (``ask``) and the request format
both sides use (``encode``, ``decode``), over the monitor's unix socket.

This is the hook's fast path. The monitor has the engine loaded already, so the hook
process needs only this module (the built-in ``posix`` and ``time`` and the C socket
module: no ``os``, json, re, typing or the ``socket`` wrapper, whose imports would add a
quarter to the interpreter's own start-up) instead of importing the whole engine. The
monitor validates, applies and logs exactly as the hook would; when it is not running,
the hook handles the event itself (``router.hook.main``).

Request: the hook's start time, then each argument, each followed by a NUL byte (an
argument cannot contain one). Reply: ``<rc>\n<log line>``.
"""
from __future__ import annotations

# The C module behind ``socket``: the same calls used here (connect, sendall, shutdown,
# recv, settimeout), without importing enum and selectors.
import _socket as socket

# ``os`` is ``posix`` plus os.path and _collections_abc, which the hook does not need.
import posix
import time

# Paths.default() gives the same path; not imported here to keep the hook's start-up small.
SOCKET = "/run/netops-multihome/hook.sock"
MAX_REQUEST = 16384
TIMEOUT_S = 10.0


def socket_path() -> str:
    return SOCKET


def boot_clock() -> float:
    """Seconds since boot (CLOCK_BOOTTIME): never steps back when the wall clock does."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def process_started() -> float:
    """When this process started on the boot clock (``boot_clock``), so events are ordered
    by when LSM spawned their hook, and the monitor can log the whole latency."""
    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        return ticks / posix.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return boot_clock()


def encode(argv: list[str], started: float) -> bytes:
    return "".join(f"{x}\0" for x in [f"{started:.6f}", *argv]).encode("utf-8", "surrogateescape")


def decode(data: bytes) -> tuple[list[str], float]:
    """(argv, started) from a request; ValueError when it is not one."""
    parts = data.decode("utf-8", "surrogateescape").split("\0")
    if len(parts) < 2 or parts[-1] != "":
        raise ValueError("not a NUL-terminated request")
    return parts[1:-1], float(parts[0])


def ask(argv: list[str], path: str | None = None) -> dict | None:
    """{"rc", "line"} from the monitor, or None when no monitor answers (then the caller
    handles the event itself). The arguments are sent as data, never interpreted here."""
    request = encode(list(argv), process_started())
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
        rc, _sep, line = data.decode("utf-8", "replace").partition("\n")
        return {"rc": int(rc), "line": line}
    except (OSError, ValueError):
        # Connected but no usable answer: the monitor may have applied the event, so
        # applying it again in-process is harmless (events are idempotent and ordered).
        return None
    finally:
        sock.close()
