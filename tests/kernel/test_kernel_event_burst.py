"""The monitor's event reader on the real kernel: a burst of link events, every line read.

A buffered text stream behind select() loses the lines that arrive together with the
first one (select() no longer reports them); the line reader must hand out every one.
"""
from __future__ import annotations

import select
import subprocess
import time

from harness import lab_name

from router.kernel_events import WATCH, LineReader, parse_link_line

NS = f"{lab_name('mht')}-burst"


def test_a_burst_of_link_events_arrives_line_for_line() -> None:
    subprocess.run(["ip", "netns", "add", NS], check=True)
    try:
        watch = subprocess.Popen(["ip", "-n", NS, *WATCH[1:]], stdout=subprocess.PIPE)
        assert watch.stdout is not None
        time.sleep(0.3)
        count = 40
        # One ip -batch: the kernel emits the events back to back, many per pipe read.
        batch = "".join(f"link add bu{i} type veth peer name bv{i}\nlink del bu{i}\n" for i in range(count))
        subprocess.run(["ip", "-n", NS, "-batch", "-"], input=batch.encode(), check=True)
        reader = LineReader(watch.stdout.fileno())
        deleted: set = set()
        reads = 0
        deadline = time.monotonic() + 5
        while len(deleted) < count and time.monotonic() < deadline:
            if select.select([reader.fd], [], [], 0.5)[0]:
                reads += 1
                for line in reader.read_lines():
                    parsed = parse_link_line(line)
                    if parsed and parsed[0].startswith("bu") and line.startswith("Deleted "):
                        deleted.add(parsed[0])
        watch.terminate()
        watch.wait()
        assert deleted == {f"bu{i}" for i in range(count)}
        assert reads < count, "each read should have carried several lines (the case a readline loses)"
    finally:
        subprocess.run(["ip", "netns", "del", NS], check=False)
