"""LSM's syslog captured for the monitor on a host that has a system log (``/dev/log``
exists, as on a router with journald or rsyslog): real LSM, real mount namespaces. The
lab's routers have no ``/dev/log``, so tests/kernel/test_health_quality.py covers the
other branch (a ``/dev`` of LSM's own)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LSM = next((p for p in ("/usr/sbin/foolsm", "/usr/sbin/lsm") if os.path.exists(p)), "lsm or foolsm")
CONFIG = """defaults {
  name=defaults
  checkip=127.0.0.1
  eventscript=
  notifyscript=
  warn_email=
  check_arp=0
  ttl=0
  status=2
  unknown_up_notify=1
}
connection {
  name=lo1
  checkip=127.0.0.1
  eventscript=
  interval_ms=100
  timeout_ms=500
  max_successive_pkts_lost=3
  min_successive_pkts_rcvd=3
  max_packet_loss=90
  min_packet_loss=10
}
"""
# Runs in a mount namespace of its own whose /dev holds a "system log" socket: starts LSM
# the way the monitor does, asks for a dump, relays what the monitor relays, and prints
# what each socket received.
INNER = """
import os, signal, socket, subprocess, sys, time
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/plugins/module_utils"]
from engine.paths import Paths
from router.quality import Quality
tmp, lsm = sys.argv[2], sys.argv[3]
old = tmp + "/olddev"
os.makedirs(old)
subprocess.run(["mount", "--rbind", "/dev", old], check=True)
subprocess.run(["mount", "-t", "tmpfs", "scratch-dev", "/dev"], check=True)
for name in ("null", "urandom"):
    open("/dev/" + name, "w").close()
    subprocess.run(["mount", "--bind", f"{old}/{name}", "/dev/" + name], check=True)
system = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
system.bind("/dev/log")
quality = Quality(Paths.default(tmp), 1.0, print)
pidfile = tmp + "/run/netops-multihome/lsm-lo.pid"
argv = quality.lsm_argv([lsm, "--no-fork", "--config", tmp + "/lsm.conf", "--pidfile", pidfile])
proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
time.sleep(2.5)
asked = quality.ask()
got, end = [], time.time() + 2.0
quality.sock.settimeout(0.2)
while time.time() < end:
    try:
        datagram = quality.sock.recv(8192)
    except socket.timeout:
        continue
    got.append(datagram)
    quality.receive(datagram, time.time())
proc.terminate()
proc.wait()
system.setblocking(False)
relayed = []
while True:
    try:
        relayed.append(system.recv(8192))
    except BlockingIOError:
        break
print("ASKED", asked)
for d in got:
    print("MONITOR", d.decode(errors="replace").split(": ", 1)[-1][:60])
for d in relayed:
    print("SYSTEM", d.decode(errors="replace").split(": ", 1)[-1][:60])
print("SAMPLES", sorted(quality.samples))
"""


def test_lsm_dump_reaches_the_monitor_and_only_its_events_are_relayed_to_an_existing_system_log(
        tmp_path: Path) -> None:
    assert os.path.exists(LSM), "install LSM (scripts/setup-host.sh)"
    (tmp_path / "lsm.conf").write_text(CONFIG)
    (tmp_path / "inner.py").write_text(textwrap.dedent(INNER))
    os.makedirs(tmp_path / "run" / "netops-multihome")
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable,
                           str(tmp_path / "inner.py"), str(ROOT), str(tmp_path), str(LSM)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    monitor = [line[8:] for line in lines if line.startswith("MONITOR ")]
    system = [line[7:] for line in lines if line.startswith("SYSTEM ")]
    assert "ASKED 1" in lines, proc.stdout
    # LSM's dump (asked for with SIGUSR1) and its first verdict came to the monitor's socket
    assert any(m.startswith("name = lo1, replied = ") for m in monitor), proc.stdout
    assert "link lo1 up event" in monitor and "SAMPLES ['lo1']" in lines, proc.stdout
    # the system log got LSM's event through the relay, none of the dumps
    assert "link lo1 up event" in system, proc.stdout
    assert not [s for s in system if s.startswith(("name = ", "seq ", "used ", "replied "))], proc.stdout
