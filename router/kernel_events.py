"""The kernel's link, address and route events (``ip -o monitor link address route``),
read so that no line is ever lost, and mapped to the uplink they concern.

``LineReader`` reads the pipe's file descriptor itself: a buffered text stream behind
``select()`` may hold a second line that ``select()`` no longer reports, and that line
would wait for the next event (or be lost at exit). ``os.read`` returns every byte the
pipe holds; every complete line is handed out at once, a partial one is kept.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

WATCH = ["ip", "-o", "monitor", "link", "address", "route"]
_ADDR = re.compile(r"^(?:Deleted )?\d+:\s+(\S+)\s+inet6?\s")
_ROUTE_DEV = re.compile(r"\bdev (\S+)")
_ROUTE_TABLE = re.compile(r"\btable (\S+)")


class LineReader:
    """Complete lines from a file descriptor, none lost, none split."""

    def __init__(self, fd: int, limit: int = 1 << 20) -> None:
        self.fd = fd
        self.limit = limit
        self.buffer = b""
        self.eof = False

    def read_lines(self) -> List[str]:
        """Call when ``select()`` says the fd is readable; [] with ``eof`` set at the end."""
        chunk = os.read(self.fd, 65536)
        if not chunk:
            self.eof = True
            rest, self.buffer = self.buffer, b""
            return [rest.decode("utf-8", "replace")] if rest else []
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        if len(self.buffer) > self.limit:  # a runaway line: hand it out rather than grow
            lines.append(self.buffer)
            self.buffer = b""
        return [line.decode("utf-8", "replace") for line in lines]


def parse_link_line(line: str) -> Optional[Tuple[str, bool]]:
    """``ip -o monitor link`` line -> (interface, carrier up); None if not a link line."""
    deleted = line.startswith("Deleted ")
    if deleted:
        line = line[len("Deleted "):]
    parts = line.split(": ", 2)
    if len(parts) < 3 or not parts[0].strip().isdigit():
        return None
    ifname = parts[1].split("@", 1)[0]
    flags_end = parts[2].find(">")
    if not parts[2].startswith("<") or flags_end < 0:
        return None
    flags = parts[2][1:flags_end].split(",")
    return ifname, (not deleted and "LOWER_UP" in flags and "UP" in flags)


@dataclass(frozen=True)
class KernelEvent:
    uplink: str
    kind: str  # link | address | route
    carrier: Optional[bool] = None  # link events: the carrier now (False when deleted)
    exists: bool = True  # link events: False for "Deleted"


def classify(line: str, uplink_of_iface: Dict[str, str],
             uplink_of_table: Dict[str, str]) -> Optional[KernelEvent]:
    """The uplink a monitor line concerns and what changed; None for anything else.

    Routes matter when deleted from an uplink's table or from main through an uplink's
    interface (the repair adds ours, so added ones would only echo it), and a default route
    added in main through an uplink's interface; addresses whenever they change."""
    line = line.strip()
    link = parse_link_line(line)
    if link is not None:
        name = uplink_of_iface.get(link[0])
        if name is None:
            return None
        return KernelEvent(name, "link", link[1], not line.startswith("Deleted "))
    addr = _ADDR.match(line)
    if addr is not None:
        name = uplink_of_iface.get(addr.group(1))
        return KernelEvent(name, "address") if name else None
    table = _ROUTE_TABLE.search(line)
    dev = _ROUTE_DEV.search(line)
    uplink_dev = uplink_of_iface.get(dev.group(1)) if dev is not None and table is None else None
    if line.startswith("Deleted "):
        if table is not None and table.group(1) in uplink_of_table:
            return KernelEvent(uplink_of_table[table.group(1)], "route")
        return KernelEvent(uplink_dev, "route") if uplink_dev else None
    # A default route a DHCP client (or an RA) adds in main gives a dynamic uplink its gateway.
    if line.startswith("default ") and uplink_dev:
        return KernelEvent(uplink_dev, "route")
    return None
