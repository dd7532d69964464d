#!/usr/bin/env python3
"""New TCP connections per second: a minimal server and a multi-process client (stdlib).

    connrate.py serve --port 5201 [--workers 2]
    connrate.py run --dst 203.0.113.10 --port 5201 [--workers 4] [--seconds 3]

Each client connection is the whole life of a short flow through a router: SYN, the
server's accept and close (FIN), the client's read of that EOF, then an abortive close
(RST) so neither end keeps TIME_WAIT state and ports are reused freely. `run` prints
{"connections", "errors", "seconds", "rate"} as JSON. Runs inside the lab's namespaces.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import struct
import sys
import time

LINGER_RST = struct.pack("ii", 1, 0)


def serve_forever(sock: socket.socket) -> None:
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            continue
        conn.close()


def serve(port: int, workers: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    sock.listen(4096)
    for _ in range(workers - 1):
        if os.fork() == 0:
            serve_forever(sock)
    print(json.dumps({"ready": port}), flush=True)
    serve_forever(sock)


def client(dst: str, port: int, until: float, timeout: float, out: multiprocessing.Queue[tuple]) -> None:
    done = errors = 0
    while time.monotonic() < until:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        s.settimeout(timeout)
        try:
            s.connect((dst, port))
            if s.recv(1) == b"":
                done += 1
            else:
                errors += 1
        except OSError:
            errors += 1
        finally:
            s.close()
    out.put((done, errors))


def run(dst: str, port: int, workers: int, seconds: float, timeout: float) -> dict:
    queue: multiprocessing.Queue = multiprocessing.Queue()
    start = time.monotonic()
    until = start + seconds
    procs = [multiprocessing.Process(target=client, args=(dst, port, until, timeout, queue))
             for _ in range(workers)]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    elapsed = time.monotonic() - start
    done = sum(r[0] for r in results)
    return {"connections": done, "errors": sum(r[1] for r in results), "seconds": round(elapsed, 3),
            "rate": round(done / elapsed, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sv = sub.add_parser("serve")
    sv.add_argument("--port", type=int, required=True)
    sv.add_argument("--workers", type=int, default=2)
    rn = sub.add_parser("run")
    rn.add_argument("--dst", required=True)
    rn.add_argument("--port", type=int, required=True)
    rn.add_argument("--workers", type=int, default=4)
    rn.add_argument("--seconds", type=float, default=3.0)
    rn.add_argument("--timeout", type=float, default=1.0)
    args = p.parse_args(argv)
    if args.cmd == "serve":
        serve(args.port, args.workers)
        return 0
    print(json.dumps(run(args.dst, args.port, args.workers, args.seconds, args.timeout)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
