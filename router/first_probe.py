"""One ICMP echo to an uplink's targets through its interface, right after a repair.

LSM, restarted for the uplink's new device or address, reports its first verdict only
after its hold time (up_after answered probes). An uplink that was absent or renumbered
should take flows again as soon as its upstream is shown to answer, so the monitor sends
one echo per target at once, bound to the uplink's interface (its routing rules pick the
uplink's table), and records the probe source up on the first reply. LSM's own verdicts
follow as usual and take the uplink out again if the upstream does not keep answering.
"""
from __future__ import annotations

import os
import select
import socket
import struct
import time
from typing import List

ECHO_REQUEST = 8
ECHO_REPLY = 0


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_packet(ident: int, seq: int) -> bytes:
    header = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident, seq)
    payload = b"netops-multihome"
    return struct.pack("!BBHHH", ECHO_REQUEST, 0, _checksum(header + payload), ident, seq) + payload


def answered(interface: str, targets: List[str], timeout: float = 1.0, attempts: int = 3) -> bool:
    """True as soon as one target answers an echo sent through INTERFACE (needs root)."""
    ident = os.getpid() & 0xFFFF
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        for seq in range(1, attempts + 1):
            for target in targets:
                try:
                    sock.sendto(echo_packet(ident, seq), (target, 0))
                except OSError:
                    continue  # no route yet; the next attempt may have one
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                if not select.select([sock], [], [], left)[0]:
                    break
                data, (source, _port) = sock.recvfrom(2048)
                icmp = data[(data[0] & 0x0F) * 4:]
                if (len(icmp) >= 8 and source in targets and icmp[0] == ECHO_REPLY
                        and struct.unpack("!H", icmp[4:6])[0] == ident):
                    return True
    return False
