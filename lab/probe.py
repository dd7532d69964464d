#!/usr/bin/env python3
"""Fire a new TCP flow every INTERVAL for DURATION and report when each started and how it ended.

    probe.py --dst 203.0.113.10 [--port 5001] [--interval 0.05] [--duration 6] [--timeout 0.5]

Prints JSON: {"t0": <monotonic start>, "flows": [[offset_s, "198.51.100.6" | "error:..."], ...]}.
Flows run concurrently (one thread each), so a hanging flow never delays the next one; this
is what failover timing is read from: the first flow after which every flow succeeded.
Standard library only; runs inside a lab client namespace.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from traffic import one_flow


def probe(dst: str, port: int, interval: float, duration: float, timeout: float) -> dict:
    results: List[Optional[list]] = []
    lock = threading.Lock()
    threads = []
    t0 = time.monotonic()

    def run(index: int, offset: float) -> None:
        res = one_flow(dst, port, "tcp", None, timeout)
        with lock:
            results[index] = [round(offset, 3), res]

    while (offset := time.monotonic() - t0) < duration:
        results.append(None)
        t = threading.Thread(target=run, args=(len(results) - 1, offset), daemon=True)
        t.start()
        threads.append(t)
        time.sleep(interval)
    for t in threads:
        t.join(timeout + 1)
    return {"t0": t0, "flows": [r for r in results if r is not None]}


def main() -> int:
    p = argparse.ArgumentParser(prog="probe")
    p.add_argument("--dst", required=True)
    p.add_argument("--port", type=int, default=5001)
    p.add_argument("--interval", type=float, default=0.05)
    p.add_argument("--duration", type=float, default=6.0)
    p.add_argument("--timeout", type=float, default=0.5)
    a = p.parse_args()
    print(json.dumps(probe(a.dst, a.port, a.interval, a.duration, a.timeout)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
