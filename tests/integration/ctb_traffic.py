"""Traffic for the conntrack_balance tests: run inside a namespace (stdlib only).

serve PORT...   answer each TCP connection with the source address it came from
                (per line received, on a long-lived connection)
flows           JSON on stdin {dst, port, n, sources, parallel, timeout}; prints the list
                of addresses the server saw (null for a failed connection)
long            JSON on stdin {dst, port, messages, interval}; prints {"seen": [...], "ok": n}
"""

from __future__ import annotations

import ipaddress
import json
import socket
import socketserver
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor


def _peer(addr: str) -> str:
    ip = ipaddress.ip_address(addr.split("%")[0])
    if ip.version == 6 and ip.ipv4_mapped:
        return str(ip.ipv4_mapped)
    return str(ip)


class Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        peer = _peer(self.client_address[0]).encode() + b"\n"
        if self.server.server_address[1] != 5002:
            self.request.sendall(peer)
            return
        buf = self.request.makefile("rb")
        for _ in buf:
            self.request.sendall(peer)


class Server(socketserver.ThreadingTCPServer):
    address_family = socket.AF_INET6
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 512

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def serve(ports) -> None:
    for port in ports:
        srv = Server(("::", int(port)), Handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    while True:
        time.sleep(3600)


def one(dst: str, port: int, source: str, timeout: float):
    fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    try:
        s.settimeout(timeout)
        if source:
            s.bind((source, 0))
        s.connect((dst, port))
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(100)
            if not chunk:
                break
            data += chunk
        return data.decode().strip() or None
    except OSError:
        return None
    finally:
        s.close()


def flows(req: dict):
    sources = req.get("sources") or [""]
    jobs = [
        (req["dst"], req["port"], sources[i % len(sources)], req.get("timeout", 3.0)) for i in range(req["n"])
    ]
    if req.get("parallel", 1) <= 1:
        return [one(*job) for job in jobs]
    with ThreadPoolExecutor(req["parallel"]) as pool:
        return list(pool.map(lambda job: one(*job), jobs))


def long(req: dict):
    fam = socket.AF_INET6 if ":" in req["dst"] else socket.AF_INET
    s = socket.create_connection((req["dst"], req["port"]), timeout=10) if fam else None
    f = s.makefile("rb")
    seen, ok = set(), 0
    try:
        for _ in range(req["messages"]):
            s.sendall(b"x\n")
            line = f.readline()
            if not line:
                break
            seen.add(line.decode().strip())
            ok += 1
            time.sleep(req["interval"])
    except OSError:
        pass
    s.close()
    return {"seen": sorted(seen), "ok": ok}


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "serve":
        serve(sys.argv[2:])
    elif cmd == "flows":
        print(json.dumps(flows(json.load(sys.stdin))))
    elif cmd == "long":
        print(json.dumps(long(json.load(sys.stdin))))
