"""systemd-booted lab routers: a Debian root file system per release, booted by
``systemd-nspawn --boot`` inside the router's network namespace (standard library only).

The root file system is built once per release and package list with ``mmdebstrap`` from
the Debian mirror apt on this host uses, and cached under CACHE_DIR/<release>-<digest>;
each node boots from an overlay on it (its own writable upper directory, its "disk"),
so a node keeps what the playbook installed across reboots and `down` removes it.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

CACHE_DIR = Path(os.environ.get("MHLAB_CACHE", "/var/cache/netops-multihome-lab"))
DEFAULT_RELEASE = "trixie"
# What a router needs besides its LSM: the role's packages, Ansible's apt module
# (python3-apt), systemd as PID 1, sshd for the controller, ps for the administrator.
BASE_PACKAGES = ["systemd", "systemd-sysv", "openssh-server", "python3", "python3-apt",
                 "iproute2", "nftables", "iptables", "conntrack", "procps"]
RELEASES: Dict[str, List[str]] = {
    "bookworm": [*BASE_PACKAGES, "lsm"],      # Debian 12: LSM 1.0.4, binary /usr/sbin/lsm
    "trixie": [*BASE_PACKAGES, "foolsm"],     # Debian 13: foolsm 1.0.21, /usr/sbin/foolsm
}
SOURCES = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
FALLBACK_MIRROR = "http://deb.debian.org/debian"
BOOT_TIMEOUT = 60.0


class NspawnError(Exception):
    pass


def check_release(release: str) -> None:
    if release not in RELEASES:
        raise NspawnError(f"--release {release!r}: use one of {', '.join(sorted(RELEASES))}")


def host_mirror() -> str:
    """The Debian archive apt on this host uses (deb822 `URIs:` or one-line `deb URI`)."""
    for path in SOURCES:
        with contextlib.suppress(OSError):
            text = path.read_text()
            for uri in re.findall(r"^\s*(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s+)?)(\S+)", text, re.M):
                if uri.rstrip("/").endswith("/debian"):
                    return uri.rstrip("/")
    return FALLBACK_MIRROR


def rootfs_key(release: str, mirror: str) -> str:
    spec = "\n".join([release, mirror, *RELEASES[release]])
    return f"{release}-{hashlib.sha256(spec.encode()).hexdigest()[:12]}"


def rootfs(release: str, log=None) -> Path:
    """The cached root file system of RELEASE; built (about 30 s) when missing or when
    the package list or mirror changed. Safe against concurrent builders (a lock)."""
    check_release(release)
    if shutil.which("mmdebstrap") is None:
        raise NspawnError("mmdebstrap is missing (apt-get install mmdebstrap; scripts/setup-host.sh)")
    mirror = host_mirror()
    target = CACHE_DIR / rootfs_key(release, mirror)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "usr" / "lib" / "systemd" / "systemd").exists():
            return target
        building = CACHE_DIR / f".{target.name}.tmp"
        shutil.rmtree(building, ignore_errors=True)
        started = time.monotonic()
        proc = subprocess.run(
            ["mmdebstrap", "--variant=minbase", "--include=" + ",".join(RELEASES[release]),
             release, str(building), mirror],
            capture_output=True, text=True)
        if proc.returncode != 0:
            shutil.rmtree(building, ignore_errors=True)
            raise NspawnError(f"mmdebstrap {release} failed:\n{proc.stderr[-3000:]}")
        for old in CACHE_DIR.glob(f"{release}-*"):
            shutil.rmtree(old, ignore_errors=True)  # superseded package lists
        building.rename(target)
        if log:
            log(f"built {release} root file system in {time.monotonic() - started:.1f} s: {target}")
    return target


# ---------------------------------------------------------------- one node

def node_paths(rdir: Path) -> Dict[str, Path]:
    return {"upper": rdir / "disk" / "upper", "work": rdir / "disk" / "work",
            "root": rdir / "root", "pid": rdir / "nspawn.pid", "log": rdir / "boot.log"}


def prepare(rdir: Path, lower: Path, hostname: str, authorized_key: str) -> None:
    """Mount the node's root (overlay on the cached tree) and give it its identity."""
    p = node_paths(rdir)
    for key in ("upper", "work", "root"):
        p[key].mkdir(parents=True, exist_ok=True)
    if not os.path.ismount(p["root"]):
        subprocess.run(["mount", "-t", "overlay", f"mhlab-{hostname}-root", "-o",
                        f"lowerdir={lower},upperdir={p['upper']},workdir={p['work']}", str(p["root"])],
                       check=True, capture_output=True)
    root = p["root"]
    (root / "etc" / "hostname").write_text(hostname + "\n")
    ssh = root / "root" / ".ssh"
    ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
    (ssh / "authorized_keys").write_text(authorized_key)
    os.chmod(ssh / "authorized_keys", 0o600)


def boot(rdir: Path, machine: str, netns: str, binds: Sequence[str] = ()) -> int:
    """Boot the node in the background; returns systemd-nspawn's pid (in nspawn.pid)."""
    if shutil.which("systemd-nspawn") is None:
        raise NspawnError("systemd-nspawn is missing (apt-get install systemd-container)")
    p = node_paths(rdir)
    log = open(p["log"], "ab")  # noqa: SIM115 - handed to the child
    # No systemd on this host: --register=no (no machined) and --keep-unit (no scope unit).
    argv = ["systemd-nspawn", "--boot", f"--directory={p['root']}", f"--machine={machine}",
            f"--network-namespace-path=/run/netns/{netns}", "--register=no", "--keep-unit",
            "--capability=CAP_NET_ADMIN", "--console=read-only",
            *[f"--bind-ro={b}" for b in binds], "systemd.firstboot=off"]
    # The node owns its network namespace: let it write /proc/sys/net like a real router.
    env = dict(os.environ, SYSTEMD_NSPAWN_API_VFS_WRITABLE="network")
    proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                            start_new_session=True, env=env)
    p["pid"].write_text(f"{proc.pid}\n")
    for _ in range(200):  # until the child has become systemd-nspawn (or died)
        if nspawn_pid(rdir) is not None or proc.poll() is not None:
            break
        time.sleep(0.005)
    return proc.pid


def nspawn_pid(rdir: Path) -> Optional[int]:
    try:
        pid = int(node_paths(rdir)["pid"].read_text().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return pid if b"systemd-nspawn" in fh.read() else None
    except (OSError, ValueError):
        return None


def leader_pid(rdir: Path) -> Optional[int]:
    """PID (on the host) of the node's systemd, its PID 1."""
    pid = nspawn_pid(rdir)
    if pid is None:
        return None
    with contextlib.suppress(OSError, ValueError):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return int(children[0]) if children else None
    return None


def exec_argv(rdir: Path, cmd: Sequence[str]) -> List[str]:
    """Run CMD as the node's own administrator would: all its namespaces, its root."""
    pid = leader_pid(rdir)
    if pid is None:
        raise NspawnError(f"node {rdir.name} is not running (see {node_paths(rdir)['log']})")
    return ["nsenter", "-t", str(pid), "-m", "-u", "-i", "-n", "-p", "-r", "-w", "--", *cmd]


def wait_booted(rdir: Path, timeout: float = BOOT_TIMEOUT) -> float:
    """Seconds until the node's systemd finished booting (running or degraded)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if leader_pid(rdir) is not None:
            proc = subprocess.run(exec_argv(rdir, ["systemctl", "is-system-running"]),
                                  capture_output=True, text=True)
            if proc.stdout.strip() in ("running", "degraded"):
                return time.monotonic() - start
        elif nspawn_pid(rdir) is None:
            break
        time.sleep(0.1)
    tail = node_paths(rdir)["log"].read_text(errors="replace")[-2000:]
    raise NspawnError(f"node {rdir.name} did not boot within {timeout:.0f} s:\n{tail}")


def stop(rdir: Path, timeout: float = 20.0) -> None:
    """Shut the node down cleanly (SIGTERM makes nspawn power the container off)."""
    pid = nspawn_pid(rdir)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and nspawn_pid(rdir) == pid:
        time.sleep(0.05)
    if nspawn_pid(rdir) == pid:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    for _ in range(100):
        if nspawn_pid(rdir) != pid:
            break
        time.sleep(0.05)


def remove(rdir: Path) -> None:
    """Stop the node and unmount its root; the caller removes the directory (its disk)."""
    stop(rdir)
    root = node_paths(rdir)["root"]
    if os.path.ismount(root) and subprocess.run(["umount", str(root)], capture_output=True).returncode:
        subprocess.run(["umount", "-l", str(root)], capture_output=True)
