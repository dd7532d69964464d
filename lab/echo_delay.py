#!/usr/bin/env python3
"""Answer ICMP echo requests from userspace, late for chosen senders: added delay without
`tc netem` (which this host's kernel lacks).

Run inside a node whose kernel is told not to answer echo requests itself
(`net.ipv4.icmp_echo_ignore_all=1`, per network namespace): a raw socket still receives
every echo request addressed to the node, and this program sends each reply, built from
the request (same identifier, sequence and payload, addresses swapped), at once, or, while
delaying, DELAY_MS later when the request came from one of the --slow sources. SIGUSR1
starts delaying, SIGUSR2 stops it (no gap in the answers, unlike restarting it).

    python3 lab/echo_delay.py --delay-ms 300 --slow 198.51.100.6

Prints one JSON line {"ready": true} once listening; SIGTERM ends it. Standard library only.
"""
from __future__ import annotations

import argparse
import heapq
import json
import select
import signal
import socket
import struct
import sys
import time
from typing import List, Tuple


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def reply_for(packet: bytes) -> Tuple[bytes, str]:
    """(the echo reply as a whole IPv4 packet, its destination) for an echo request; ValueError otherwise."""
    ihl = (packet[0] & 0x0F) * 4
    if len(packet) < ihl + 8 or packet[9] != socket.IPPROTO_ICMP or packet[ihl] != 8:
        raise ValueError("not an echo request")
    src, dst = packet[12:16], packet[16:20]
    icmp = bytearray(packet[ihl:])
    icmp[0], icmp[2:4] = 0, b"\0\0"
    icmp[2:4] = struct.pack("!H", checksum(bytes(icmp)))
    header = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 0, 0, 64,
                                   socket.IPPROTO_ICMP, 0, dst, src))
    header[10:12] = struct.pack("!H", checksum(bytes(header)))
    return bytes(header) + bytes(icmp), socket.inet_ntoa(src)


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--delay-ms", type=float, required=True)
    parser.add_argument("--slow", action="append", default=[], help="a sender whose replies are delayed")
    args = parser.parse_args(argv)
    listen = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    send = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)  # IP_HDRINCL implied
    stopping = []
    delaying = [False]
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGUSR1, lambda *_: delaying.__setitem__(0, True))
    signal.signal(signal.SIGUSR2, lambda *_: delaying.__setitem__(0, False))
    due: List[Tuple[float, int, bytes, str]] = []
    count = 0
    sys.stdout.write(json.dumps({"ready": True}) + "\n")
    sys.stdout.flush()
    while not stopping:
        timeout = max(0.0, due[0][0] - time.monotonic()) if due else 0.5
        try:
            ready = select.select([listen], [], [], timeout)[0]
        except InterruptedError:
            continue
        if ready:
            packet = listen.recv(65535)
            try:
                reply, dest = reply_for(packet)
            except ValueError:
                continue
            delay = args.delay_ms / 1000 if delaying[0] and dest in args.slow else 0.0
            count += 1
            heapq.heappush(due, (time.monotonic() + delay, count, reply, dest))
        while due and due[0][0] <= time.monotonic():
            _at, _n, reply, dest = heapq.heappop(due)
            send.sendto(reply, (dest, 0))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
