#!/usr/bin/env python3
"""Lab traffic: a server that tells each peer which source address it saw, and clients.

    traffic.py serve  --port 5001 --log FILE
    traffic.py flows  --dst ADDR [--port 5001] [--n 100] [--proto tcp|udp] [--src ADDR]...
                      [--parallel 1]
    traffic.py stream --dst ADDR [--count 4] [--duration 10] [--interval 0.05] [--proto tcp|udp]

The server answers every TCP connection and every UDP datagram with the peer's address as
it arrived (after any NAT on the way), so a client learns which uplink carried each flow.
`flows` prints a JSON list, one entry per flow: the address seen, or "error:<reason>";
several --src addresses are used in turn, and --parallel opens that many flows at once.
`stream` holds long-lived flows and prints, per flow, the sources seen, the longest gap
between answers (a stall), and whether the flow was reset or broke; it ends after --duration
or on SIGUSR1, whichever comes first.
Standard library only; runs inside the lab's namespaces.
"""
from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional

# ---------------------------------------------------------------- server

class Server:
    def __init__(self, port: int, log_path: str, udp_addrs: List[str]) -> None:
        self.port = port
        self.udp_addrs = udp_addrs
        self.log = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the server
        self.lock = threading.Lock()
        self.udp_seen: set = set()

    def record(self, proto: str, peer: str, port: int) -> None:
        with self.lock:
            self.log.write(f"{proto} {peer} {port}\n")

    def serve_forever(self) -> None:
        tcp = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        tcp.bind(("::", self.port))
        tcp.listen(1024)
        # One UDP socket per server address, so each answer leaves from the address the
        # client sent to (a wildcard socket would answer from the outgoing link's address).
        for addr in self.udp_addrs:
            udp = socket.socket(family_of(addr), socket.SOCK_DGRAM)
            udp.bind((addr, self.port))
            threading.Thread(target=self.udp_loop, args=(udp,), daemon=True).start()
        while True:
            conn, peer = tcp.accept()
            threading.Thread(target=self.tcp_conn, args=(conn, peer), daemon=True).start()

    def tcp_conn(self, conn: socket.socket, peer: tuple) -> None:
        addr = unmap(peer[0])
        self.record("tcp", addr, peer[1])
        try:
            conn.sendall(f"{addr}\n".encode())
            pending = b""
            while True:
                data = conn.recv(4096)
                if not data:
                    break
                *lines, pending = (pending + data).split(b"\n")
                if lines:
                    conn.sendall(b"".join(f"{addr} ".encode() + line + b"\n" for line in lines))
        except OSError:
            pass
        finally:
            conn.close()

    def udp_loop(self, udp: socket.socket) -> None:
        while True:
            data, peer = udp.recvfrom(4096)
            addr = unmap(peer[0])
            key = (addr, peer[1])
            if key not in self.udp_seen:
                self.udp_seen.add(key)
                self.record("udp", addr, peer[1])
            udp.sendto(f"{addr} ".encode() + data, peer)


def unmap(addr: str) -> str:
    return addr[7:] if addr.startswith("::ffff:") else addr


# ---------------------------------------------------------------- clients

def family_of(addr: str) -> int:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def one_flow(dst: str, port: int, proto: str, src: Optional[str], timeout: float) -> str:
    fam = family_of(dst)
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(fam, kind)
    s.settimeout(timeout)
    try:
        if src:
            s.bind((src, 0))
        if proto == "tcp":
            # Close with RST so thousands of short flows leave no TIME_WAIT behind.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.connect((dst, port))
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(256)
                if not chunk:
                    break
                data += chunk
            return data.decode().strip() or "error:closed"
        for _ in range(3):
            s.sendto(b"hello\n", (dst, port))
            try:
                data = s.recv(256)
                return data.decode().split()[0]
            except socket.timeout:
                continue
        return "error:timeout"
    except socket.timeout:
        return "error:timeout"
    except OSError as exc:
        return f"error:{exc.strerror or exc}"
    finally:
        s.close()


def flows(dst: str, port: int, n: int, proto: str, srcs: List[str], timeout: float,
          parallel: int = 1) -> List[str]:
    jobs = [(dst, port, proto, srcs[i % len(srcs)] if srcs else None, timeout) for i in range(n)]
    if parallel <= 1:
        return [one_flow(*job) for job in jobs]
    with ThreadPoolExecutor(parallel) as pool:
        return list(pool.map(lambda job: one_flow(*job), jobs))


class Stream:
    """One long-lived flow: sends a sequence number every interval, timestamps each answer."""

    def __init__(self, dst: str, port: int, proto: str, src: Optional[str]) -> None:
        fam = family_of(dst)
        self.proto = proto
        self.sock = socket.socket(fam, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
        if src:
            self.sock.bind((src, 0))
        self.sock.settimeout(3)
        self.sock.connect((dst, port))
        if proto == "tcp":
            self.sock.recv(256)  # greeting
        self.sources: List[str] = []
        self.answers: List[float] = []
        self.error: Optional[str] = None
        self.sent = 0
        self.local = self.sock.getsockname()[1]

    def send(self) -> None:
        try:
            self.sock.send(f"{self.sent}\n".encode())
            self.sent += 1
        except OSError as exc:
            self.error = self.error or f"send:{exc.strerror or exc}"

    def receive_loop(self, stop: threading.Event) -> None:
        self.sock.settimeout(0.2)
        buf = b""
        while not stop.is_set() and self.error is None:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError as exc:
                self.error = f"recv:{exc.strerror or exc}"
                break
            if not data:
                self.error = "closed"
                break
            buf = data if self.proto == "udp" else buf + data
            lines = [buf] if self.proto == "udp" else buf.split(b"\n")[:-1]
            if self.proto == "tcp":
                buf = buf.split(b"\n")[-1]
            now = time.monotonic()
            for line in lines:
                src = line.decode(errors="replace").split()[0] if line.strip() else ""
                if src and src not in self.sources:
                    self.sources.append(src)
                self.answers.append(now)

    def report(self, start: float, end: float) -> dict:
        points = [start, *self.answers, end]
        gaps = [b - a for a, b in zip(points, points[1:])]
        return {
            "local_port": self.local,
            "sources": self.sources,
            "sent": self.sent,
            "answered": len(self.answers),
            "max_gap": round(max(gaps), 3),
            "error": self.error,
        }


def stream(dst: str, port: int, count: int, duration: float, interval: float, proto: str,
           src: Optional[str]) -> List[dict]:
    streams = [Stream(dst, port, proto, src) for _ in range(count)]
    stop, ended = threading.Event(), threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: ended.set())
    threads = [threading.Thread(target=s.receive_loop, args=(stop,), daemon=True) for s in streams]
    start = time.monotonic()
    for t in threads:
        t.start()
    print(json.dumps({"ready": [s.local for s in streams]}), flush=True)
    while time.monotonic() - start < duration and not ended.is_set():
        for s in streams:
            if s.error is None:
                s.send()
        time.sleep(interval)
    time.sleep(min(1.0, interval * 4))
    end = time.monotonic() - min(1.0, interval * 4)
    stop.set()
    for t in threads:
        t.join(1)
    return [s.report(start, end) for s in streams]


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="traffic")
    sub = p.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("serve")
    sp.add_argument("--port", type=int, default=5001)
    sp.add_argument("--log", required=True)
    sp.add_argument("--udp-addr", action="append", default=[], help="address to answer UDP on")
    for name in ("flows", "stream"):
        cp = sub.add_parser(name)
        cp.add_argument("--dst", required=True)
        cp.add_argument("--port", type=int, default=5001)
        cp.add_argument("--proto", choices=["tcp", "udp"], default="tcp")
        if name == "flows":
            cp.add_argument("--src", action="append", default=[])
            cp.add_argument("--n", type=int, default=10)
            cp.add_argument("--parallel", type=int, default=1)
            cp.add_argument("--timeout", type=float, default=2.0)
        else:
            cp.add_argument("--src")
            cp.add_argument("--count", type=int, default=4)
            cp.add_argument("--duration", type=float, default=10.0)
            cp.add_argument("--interval", type=float, default=0.05)
    args = p.parse_args(argv)
    if args.cmd == "serve":
        Server(args.port, args.log, args.udp_addr).serve_forever()
    elif args.cmd == "flows":
        print(json.dumps(flows(args.dst, args.port, args.n, args.proto, args.src, args.timeout,
                               args.parallel)))
    else:
        print(json.dumps({"streams": stream(args.dst, args.port, args.count, args.duration,
                                             args.interval, args.proto, args.src)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
