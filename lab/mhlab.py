#!/usr/bin/env python3
"""mhlab: build, inspect and tear down the namespace lab (standard library only).

    mhlab.py up     [--topology default] [--name mh]   idempotent; --topology NAME or FILE.json
    mhlab.py down   [--name mh]                        leaves nothing behind
    mhlab.py status [--name mh] [--json]
    mhlab.py exec   [--name mh] NODE -- CMD...         run CMD inside a node
    mhlab.py reboot [--name mh] ROUTER                 power-cycle a systemd-booted router
    mhlab.py plan   [--topology default]               print the addressing plan

Every node is a network namespace called NAME-NODE. Routers also get their own mount
namespace (overlays on /etc, /var and /usr/local, a fresh tmpfs on /run) anchored by a
per-router sshd on a management link from the host, so they are driven like real ones.
A router with "init": "systemd" in its topology instead boots Debian (--release) with
systemd as PID 1 under systemd-nspawn in its namespace, its sshd on the same link (nspawn.py).
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from ipaddress import ip_interface
from pathlib import Path
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ha_pair
import nspawn
from addressing import SERVER4, SERVER6, SITE4, Plan, build_plan, is_topology_file, load_topology

LAB_DIR = Path(__file__).resolve().parent
REQUIRED_TOOLS = ["ip", "nft", "nsenter", "unshare", "mount", "ssh-keygen", "ssh"]
SSHD = "/usr/sbin/sshd"
SERVER_PORT = 5001
MGMT_BASE = "10.254"
SSH_OPTIONS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")


class LabError(Exception):
    pass


def labdir(name: str) -> Path:
    return Path(f"/tmp/mhlab-{name}")


def sh(argv: Sequence[str], check: bool = True, stdin: Optional[str] = None) -> str:
    proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def preflight() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network and mount namespaces); run it with sudo or as root")
    missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
    if not os.path.exists(SSHD):
        missing.append(SSHD + " (openssh-server)")
    if missing:
        raise LabError("missing tools: " + ", ".join(missing) + " — run .ci/run or install them")


def check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise LabError(f"--name {name!r}: use 1-8 lowercase letters/digits starting with a letter")


# ---------------------------------------------------------------- state

def read_state(name: str) -> Optional[dict]:
    path = labdir(name) / "state.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


def lab_namespaces(name: str) -> List[str]:
    out = sh(["ip", "-j", "netns", "list"], check=False) or "[]"
    return sorted(n["name"] for n in json.loads(out) if n["name"].startswith(f"{name}-"))


def used_slots() -> set:
    slots = set()
    for path in Path("/tmp").glob("mhlab-*/state.json"):
        try:
            slots.add(json.loads(path.read_text())["slot"])
        except (ValueError, KeyError, OSError):
            continue
    # Labs still being built have only claimed their slot (state.json comes at the end).
    for path in Path("/tmp").glob("mhlab-*/slot"):
        with contextlib.suppress(ValueError, OSError):
            slots.add(int(path.read_text()))
    return slots


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def read_pid(path: Path) -> Optional[int]:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def is_healthy(name: str, state: dict) -> bool:
    expected = {f"{name}-{n}" for n in state["nodes"]}
    if not expected.issubset(set(lab_namespaces(name))):
        return False
    for router, info in state["routers"].items():
        if router in state.get("booted", {}):
            if nspawn.leader_pid(labdir(name) / router) is None:
                return False
        elif read_pid(labdir(name) / router / "sshd.pid") is None:
            return False
        if not tcp_open(info["mgmt"], 22):
            return False
    return read_pid(labdir(name) / "server.pid") is not None


def tcp_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------- building

def ns(name: str, node: str) -> str:
    return f"{name}-{node}"


def ipn(netns: str, *args: str) -> None:
    sh(["ip", "-n", netns, *args])


def sysctl(netns: str, key: str, value: str) -> None:
    sh(["ip", "netns", "exec", netns, "sysctl", "-qw", f"{key}={value}"])


def add_node(netns: str) -> None:
    sh(["ip", "netns", "add", netns])
    ipn(netns, "link", "set", "lo", "up")
    # No router advertisements or DAD delays in the lab: addresses are static.
    sysctl(netns, "net.ipv6.conf.all.accept_ra", "0")
    sysctl(netns, "net.ipv6.conf.default.accept_ra", "0")
    sysctl(netns, "net.ipv6.conf.all.accept_dad", "0")
    sysctl(netns, "net.ipv6.conf.default.accept_dad", "0")
    # Keep IPv6 addresses when the lab takes a link administratively down (link faults).
    sysctl(netns, "net.ipv6.conf.all.keep_addr_on_down", "1")
    sysctl(netns, "net.ipv6.conf.default.keep_addr_on_down", "1")


def veth(ns_a: str, if_a: str, ns_b: str, if_b: str) -> None:
    sh(["ip", "-n", ns_a, "link", "add", if_a, "type", "veth", "peer", "name", if_b, "netns", ns_b])
    ipn(ns_a, "link", "set", if_a, "up")
    ipn(ns_b, "link", "set", if_b, "up")


def addr(netns: str, dev: str, cidr: str) -> None:
    extra = ["nodad"] if ":" in cidr else []
    ipn(netns, "addr", "add", cidr, "dev", dev, *extra)


def route(netns: str, *spec: str) -> None:
    fam = "-6" if any(":" in s for s in spec) else "-4"
    sh(["ip", fam, "-n", netns, "route", "replace", *spec])


def isp_ruleset(plan: Plan, isp: str) -> str:
    """Anti-spoofing (drop what a customer sends from someone else's address) + fault hooks."""
    lines = [
        "table inet lab {",
        "  counter spoofed { }",
        "  chain faults { type filter hook forward priority -10; policy accept; }",
        "  chain probes { type filter hook forward priority -20; policy accept; }",
        "  chain antispoof {",
        "    type filter hook forward priority 0; policy accept;",
    ]
    lines += ha_pair.antispoof_rules(plan, isp) if plan.ha else []
    for router in [] if plan.ha else plan.routers.values():
        for up in router.uplinks:
            if up.isp != isp:
                continue
            a4 = up.address4.split("/")[0]
            a6 = up.address6.split("/")[0]
            lines.append(f'    iifname "{up.isp_if}" ip saddr != {a4} counter name spoofed drop')
            lines.append(
                f'    iifname "{up.isp_if}" ip6 saddr != {{ {a6}, {up.delegated6} }} '
                "counter name spoofed drop"
            )
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def build(name: str, plan: Plan, slot: int, booted: Dict[str, str]) -> dict:
    d = labdir(name)
    nodes = ["inet", *plan.isps, *plan.routers, *(lan.client for lan in plan.clients)]
    for node in nodes:
        add_node(ns(name, node))
    inet = ns(name, "inet")

    # The "internet": servers and the backbone links to every ISP.
    for a in SERVER4:
        addr(inet, "lo", f"{a}/32")
    for a in SERVER6:
        addr(inet, "lo", f"{a}/128")
    sysctl(inet, "net.ipv4.ip_forward", "1")
    sysctl(inet, "net.ipv6.conf.all.forwarding", "1")
    for isp in plan.isps.values():
        n_isp = ns(name, isp.name)
        veth(n_isp, "upstream", inet, isp.name)
        addr(n_isp, "upstream", isp.upstream4)
        addr(n_isp, "upstream", isp.upstream6)
        addr(inet, isp.name, isp.inet4)
        addr(inet, isp.name, isp.inet6)
        sysctl(n_isp, "net.ipv4.ip_forward", "1")
        sysctl(n_isp, "net.ipv6.conf.all.forwarding", "1")

    routers_state: Dict[str, dict] = {}
    if plan.ha:
        ha_pair.link_routers(name, plan)
    for router in plan.routers.values():
        routers_state[router.name] = wire_router(name, plan, router.name, slot)

    for isp in plan.isps:
        upstream_routes(name, plan, isp)
        sh(["ip", "netns", "exec", ns(name, isp), "nft", "-f", "-"], stdin=isp_ruleset(plan, isp))

    keyfile = d / "id_ed25519"
    sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"mhlab-{name}", "-f", str(keyfile)])
    for rname, info in routers_state.items():
        if rname in booted:
            boot_router(name, rname, booted[rname], info["mgmt"])
        else:
            start_router(name, rname, info["mgmt"], keyfile)
    start_server(name)
    return {"routers": routers_state, "nodes": nodes, "booted": booted}


def boot_router(name: str, router: str, release: str, mgmt: str) -> float:
    """Boot a systemd router on its own disk (overlay on the release's cached tree); the
    lab's tools are bound read-only at their host path. Seconds until sshd answered."""
    rdir = labdir(name) / router
    nspawn.prepare(rdir, nspawn.rootfs(release, log=print), router,
                   (labdir(name) / "id_ed25519.pub").read_text())
    started = time.monotonic()
    nspawn.boot(rdir, ns(name, router), ns(name, router), binds=[str(LAB_DIR)])
    deadline = started + nspawn.BOOT_TIMEOUT
    while not tcp_open(mgmt, 22):
        if time.monotonic() > deadline or nspawn.nspawn_pid(rdir) is None:
            log = nspawn.node_paths(rdir)["log"]
            raise LabError(f"router {router} did not boot to sshd on {mgmt}:22; see {log}")
        time.sleep(0.05)
    return time.monotonic() - started


def reboot(name: str, router: str) -> float:
    """Power-cycle a systemd router: clean shutdown, a fresh network namespace (the
    kernel forgets every route, rule, ruleset and sysctl, as on real hardware), the
    lab's cabling again, boot from the same disk. Seconds from power-on to sshd."""
    state = read_state(name)
    if state is None or router not in state.get("booted", {}):
        raise LabError(f"no systemd-booted router {router!r} in lab {name!r}")
    nspawn.stop(labdir(name) / router)
    netns = ns(name, router)
    kill_pids([int(p) for p in sh(["ip", "netns", "pids", netns], check=False).split()])
    sh(["ip", "netns", "del", netns])
    add_node(netns)
    plan = build_plan(state["topology"])
    wire_router(name, plan, router, state["slot"])
    return boot_router(name, router, state["booted"][router], state["routers"][router]["mgmt"])


def wire_router(name: str, plan: Plan, rname: str, slot: int) -> dict:
    """The router's links and addresses (its LANs' clients included) and its management
    link from the host; run again on a fresh namespace when a booted router reboots."""
    router = plan.routers[rname]
    n_r = ns(name, router.name)
    # Like Ubuntu (sysctl.d/10-network-security.conf), not the kernel's 0: the role must
    # make the LANs strict against an `all` value that would otherwise win.
    sysctl(n_r, "net.ipv4.conf.all.rp_filter", "2")
    sysctl(n_r, "net.ipv4.conf.default.rp_filter", "2")
    if not plan.ha:
        link_router(name, router)
    host_if = f"{name}-m{router.index}"
    mgmt_host = f"{MGMT_BASE}.{slot}.{4 * (router.index - 1) + 1}"
    mgmt_router = f"{MGMT_BASE}.{slot}.{4 * (router.index - 1) + 2}"
    sh(["ip", "link", "add", host_if, "type", "veth", "peer", "name", "mgmt0", "netns", n_r])
    sh(["ip", "link", "set", host_if, "up"])
    sh(["ip", "addr", "add", f"{mgmt_host}/30", "dev", host_if])
    ipn(n_r, "link", "set", "mgmt0", "up")
    addr(n_r, "mgmt0", f"{mgmt_router}/30")
    return {"mgmt": mgmt_router, "mgmt_host_if": host_if}


def link_router(name: str, router) -> None:
    """A plain router's own links: one per ISP, one per LAN (with its client)."""
    n_r = ns(name, router.name)
    sysctl(n_r, "net.ipv4.ip_forward", "0")
    sysctl(n_r, "net.ipv6.conf.all.forwarding", "0")
    for up in router.uplinks:
        n_isp = ns(name, up.isp)
        veth(n_isp, up.isp_if, n_r, up.router_if)
        addr(n_r, up.router_if, up.address4)
        addr(n_r, up.router_if, up.address6)
        addr(n_isp, up.isp_if, up.gateway4 + "/30")
        addr(n_isp, up.isp_if, up.gateway6 + "/64")
        route(n_isp, up.delegated6, "via", up.address6.split("/")[0])
    first = router.uplinks[0]
    route(n_r, "default", "via", first.gateway4, "dev", first.router_if)
    route(n_r, "default", "via", first.gateway6, "dev", first.router_if)
    for lan in router.lans:
        n_c = ns(name, lan.client)
        veth(n_r, lan.name, n_c, "eth0")
        addr(n_r, lan.name, lan.router4)
        addr(n_c, "eth0", lan.client4)
        for a in lan.router6:
            addr(n_r, lan.name, a)
        for a in lan.client6:
            addr(n_c, "eth0", a)
        route(n_c, "default", "via", lan.router4.split("/")[0])
        route(n_c, "default", "via", lan.router6[0].split("/")[0])
    if router.site:
        site_link(name, router)


def site_link(name: str, router) -> None:
    """A private link from ROUTER to the other site in inet: no ISP, no NAT, no anti-spoofing."""
    site, n_r, inet = router.site, ns(name, router.name), ns(name, "inet")
    veth(n_r, site.router_if, inet, router.name)
    addr(n_r, site.router_if, site.address4)
    addr(inet, router.name, f"{site.gateway4}/30")
    if not has_address(inet, SITE4):
        addr(inet, "lo", f"{SITE4}/32")
    route(n_r, site.destinations4, "via", site.gateway4, "dev", site.router_if)
    for lan in router.lans:
        route(inet, str(ip_interface(lan.router4).network), "via", site.address4.split("/")[0])


def has_address(netns: str, address: str) -> bool:
    return f" {address}/" in sh(["ip", "-n", netns, "-4", "addr", "show", "dev", "lo"])


def upstream_routes(name: str, plan: Plan, isp_name: str) -> None:
    """Routes over an ISP's backbone link (the kernel drops them when that link goes down)."""
    isp = plan.isps[isp_name]
    n_isp, inet = ns(name, isp_name), ns(name, "inet")
    route(n_isp, "default", "via", isp.inet4.split("/")[0])
    route(n_isp, "default", "via", isp.inet6.split("/")[0])
    for router in plan.routers.values():
        for up in router.uplinks:
            if up.isp == isp_name:
                route(inet, str(ip_interface(up.address4).network), "via", isp.upstream4.split("/")[0])
                route(inet, str(ip_interface(up.address6).network), "via", isp.upstream6.split("/")[0])
                route(inet, up.delegated6, "via", isp.upstream6.split("/")[0])


def set_upstream(name: str, isp: str, up_: bool) -> None:
    """Cut or restore an ISP's link to the internet; the router's own link stays up."""
    state = read_state(name)
    if state is None or isp not in state["plan"]["isps"]:
        raise LabError(f"no ISP {isp!r} in lab {name!r}")
    sh(["ip", "-n", ns(name, isp), "link", "set", "upstream", "up" if up_ else "down"])
    sh(["ip", "-n", ns(name, "inet"), "link", "set", isp, "up" if up_ else "down"])
    if up_:
        upstream_routes(name, build_plan(state["topology"]), isp)


def set_carrier(name: str, isp: str, router: str, up_: bool) -> None:
    """The ISP's port facing ROUTER goes down or up: the router sees carrier loss."""
    state = read_state(name)
    if state is None or isp not in state["plan"]["isps"] or router not in state["routers"]:
        raise LabError(f"no link {isp}-{router} in lab {name!r}")
    sh(["ip", "-n", ns(name, isp), "link", "set", router, "up" if up_ else "down"])
    if up_:
        for up in build_plan(state["topology"]).routers[router].uplinks:
            if up.isp == isp:
                route(ns(name, isp), up.delegated6, "via", up.address6.split("/")[0])


def start_router(name: str, router: str, mgmt: str, keyfile: Path) -> None:
    rdir = labdir(name) / router
    for sub in ("etc/upper", "etc/work", "var/upper", "var/work", "local/upper", "local/work"):
        (rdir / sub).mkdir(parents=True, exist_ok=True)
    sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(rdir / "ssh_host_ed25519_key")])
    shutil.copy(f"{keyfile}.pub", rdir / "authorized_keys")
    os.chmod(rdir / "authorized_keys", 0o600)
    (rdir / "sshd_config").write_text(
        "\n".join(
            [
                f"ListenAddress {mgmt}",
                f"HostKey {rdir / 'ssh_host_ed25519_key'}",
                f"PidFile {rdir / 'sshd.pid'}",
                f"AuthorizedKeysFile {rdir / 'authorized_keys'}",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "Subsystem sftp internal-sftp",
                "MaxStartups 50:30:100",
                "",
            ]
        )
    )
    sh(["ip", "netns", "exec", ns(name, router), "unshare", "--mount", "--uts", "--propagation", "private",
        sys.executable, str(Path(__file__).resolve()), "_router-init", name, router])
    deadline = time.monotonic() + 10
    while not tcp_open(mgmt, 22):
        if time.monotonic() > deadline:
            raise LabError(f"sshd of router {router} did not start on {mgmt}:22")
        time.sleep(0.05)


def router_init(name: str, router: str) -> None:
    """Runs inside the router's fresh mount namespace: give it its own /etc, /var, /usr/local, /run."""
    rdir = labdir(name) / router
    for target, sub in (("/etc", "etc"), ("/var", "var"), ("/usr/local", "local")):
        sh(["mount", "-t", "overlay", f"mhlab-{router}-{sub}", "-o",
            f"lowerdir={target},upperdir={rdir / sub / 'upper'},workdir={rdir / sub / 'work'}", target])
    sh(["mount", "-t", "tmpfs", "-o", "mode=0755", f"mhlab-{router}-run", "/run"])
    for sub in ("sshd", "lock"):
        os.makedirs(f"/run/{sub}", exist_ok=True)
    (Path("/etc") / "hostname").write_text(router + "\n")
    socket.sethostname(router)
    os.execv(SSHD, [SSHD, "-f", str(rdir / "sshd_config")])


def start_server(name: str) -> None:
    d = labdir(name)
    log = open(d / "server.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns(name, "inet"), sys.executable, str(LAB_DIR / "traffic.py"),
         "serve", "--port", str(SERVER_PORT), "--log", str(d / "flows.log"),
         *[arg for a in SERVER4 + SERVER6 for arg in ("--udp-addr", a)]],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    (d / "server.pid").write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + 10
    while True:
        out = sh(["ip", "netns", "exec", ns(name, "inet"), "ss", "-Hltn", f"sport = :{SERVER_PORT}"],
                 check=False)
        if out.strip():
            return
        if time.monotonic() > deadline:
            raise LabError("traffic server in inet did not start; see " + str(d / "server.log"))
        time.sleep(0.05)


def role_vars_dir(topology: str) -> Path:
    """Where a topology's group_vars/ and host_vars/ live: inventories/NAME for a named one,
    the directory beside a topology file with the file's stem (gen.json -> gen/)."""
    if is_topology_file(topology):
        path = Path(topology).resolve()
        return path.with_name(path.stem)
    return LAB_DIR / "inventories" / topology


def write_inventory(name: str, topology: str, state: dict) -> Path:
    d = labdir(name) / "inventory"
    d.mkdir(parents=True, exist_ok=True)
    hosts = {}
    for router, info in state["routers"].items():
        hosts[router] = {
            "ansible_host": info["mgmt"],
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(labdir(name) / "id_ed25519"),
            "ansible_ssh_common_args": SSH_OPTIONS,
            "ansible_python_interpreter": "/usr/bin/python3",
        }
    inv = {"all": {"children": {"routers": {"hosts": hosts}}}}
    # JSON is valid YAML; keeps the tool free of third-party modules.
    (d / "hosts.yml").write_text(json.dumps(inv, indent=2) + "\n")
    src = role_vars_dir(topology)
    for sub in ("group_vars", "host_vars"):
        if (src / sub).is_dir():
            shutil.copytree(src / sub, d / sub, dirs_exist_ok=True)
    return d


# ---------------------------------------------------------------- commands

def booted_routers(topology: str, release: Optional[str]) -> Dict[str, str]:
    """Routers of TOPOLOGY that boot systemd, with their Debian release (--release wins)."""
    routers = load_topology(topology)["routers"]
    found = {r: release or d.get("release", nspawn.DEFAULT_RELEASE)
             for r, d in routers.items() if d.get("init") == "systemd"}
    for rel in set(found.values()):
        nspawn.check_release(rel)
    return found


def up(name: str, topology: str, release: Optional[str] = None) -> dict:
    preflight()
    check_name(name)
    if is_topology_file(topology):
        topology = str(Path(topology).resolve())
    booted = booted_routers(topology, release)
    state = read_state(name)
    if (state and state["topology"] == topology and state.get("booted", {}) == booted
            and is_healthy(name, state)):
        return state
    if state or lab_namespaces(name):
        down(name)
    plan = build_plan(topology)
    d = labdir(name)
    d.mkdir(mode=0o700, parents=True)
    with open("/tmp/mhlab-slots.lock", "w") as lock:  # labs built in parallel claim one slot each
        fcntl.flock(lock, fcntl.LOCK_EX)
        free = sorted(set(range(1, 250)) - used_slots())
        (d / "slot").write_text(f"{free[0]}\n")
    try:
        built = build(name, plan, free[0], booted)
    except BaseException:
        down(name)
        raise
    state = {"name": name, "topology": topology, "slot": free[0], "plan": plan.to_dict(), **built}
    (d / "state.json").write_text(json.dumps(state, indent=2) + "\n")
    write_inventory(name, topology, state)
    return state


def is_gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def kill_pids(pids: List[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in pids:
        for _ in range(100):
            if is_gone(pid):
                break
            time.sleep(0.01)


def down(name: str) -> None:
    preflight()
    check_name(name)
    d = labdir(name)
    for node_dir in d.glob("*/nspawn.pid") if d.exists() else []:
        nspawn.remove(node_dir.parent)
    for pidfile in d.glob("*.pid") if d.exists() else []:
        pid = read_pid(pidfile)
        if pid:
            # The server runs under `ip netns exec`, in its own session: kill the whole group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    for netns in lab_namespaces(name):
        pids = [int(p) for p in sh(["ip", "netns", "pids", netns], check=False).split()]
        kill_pids(pids)
        sh(["ip", "netns", "del", netns], check=False)
    for link in json.loads(sh(["ip", "-j", "link", "show"], check=False) or "[]"):
        if re.match(rf"^{re.escape(name)}-m\d+$", link["ifname"]):
            sh(["ip", "link", "del", link["ifname"]], check=False)
    if d.exists():
        shutil.rmtree(d)


def status(name: str) -> dict:
    state = read_state(name)
    if state is None:
        return {"name": name, "up": False, "namespaces": lab_namespaces(name)}
    return {
        "name": name,
        "up": is_healthy(name, state),
        "topology": state["topology"],
        "namespaces": lab_namespaces(name),
        "routers": state["routers"],
        "inventory": str(labdir(name) / "inventory"),
    }


def exec_argv(name: str, node: str, cmd: Sequence[str]) -> List[str]:
    """The argv that runs CMD in NODE (routers: their network *and* mount namespace)."""
    state = read_state(name)
    if state is None:
        raise LabError(f"lab {name!r} is not up (run: mhlab.py up --name {name})")
    if node not in state["nodes"]:
        raise LabError(f"unknown node {node!r}; nodes: {', '.join(state['nodes'])}")
    if node in state.get("booted", {}):
        return nspawn.exec_argv(labdir(name) / node, cmd)
    if node in state["routers"]:
        pid = read_pid(labdir(name) / node / "sshd.pid")
        if pid is None:
            raise LabError(f"router {node} is not running (its sshd is gone)")
        return ["nsenter", "-t", str(pid), "-n", "-m", "-u", f"--wd={os.getcwd()}", "--", *cmd]
    return ["ip", "netns", "exec", ns(name, node), *cmd]


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="mhlab", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for cmd in ("up", "down", "status", "exec", "plan", "reboot"):
        sp = sub.add_parser(cmd)
        sp.add_argument("--name", default=os.environ.get("MHLAB_NAME", "mh"))
        if cmd in ("up", "plan"):
            sp.add_argument("--topology", default="default")
        if cmd == "up":
            sp.add_argument("--release", choices=sorted(nspawn.RELEASES),
                            help="Debian release of the systemd-booted routers (default: the topology's)")
        if cmd == "reboot":
            sp.add_argument("router")
        if cmd == "status":
            sp.add_argument("--json", action="store_true")
        if cmd == "exec":
            sp.add_argument("node")
            sp.add_argument("command", nargs=argparse.REMAINDER)
    ri = sub.add_parser("_router-init")
    ri.add_argument("name")
    ri.add_argument("router")
    args = p.parse_args(argv)
    try:
        if args.cmd == "_router-init":
            router_init(args.name, args.router)
        elif args.cmd == "up":
            state = up(args.name, args.topology, args.release)
            print(f"lab {args.name} up ({state['topology']}): inventory {labdir(args.name) / 'inventory'}")
            for r, info in state["routers"].items():
                print(f"  {r}: ssh -i {labdir(args.name) / 'id_ed25519'} root@{info['mgmt']}")
        elif args.cmd == "reboot":
            seconds = reboot(args.name, args.router)
            print(f"{args.router} rebooted; sshd answered {seconds:.1f} s after power-on")
        elif args.cmd == "down":
            down(args.name)
            print(f"lab {args.name} down")
        elif args.cmd == "status":
            st = status(args.name)
            if args.json:
                print(json.dumps(st, indent=2))
            else:
                print(f"lab {st['name']}: {'up' if st['up'] else 'down'}"
                      + (f" ({st['topology']})" if "topology" in st else ""))
                for n in st["namespaces"]:
                    print(f"  netns {n}")
            return 0 if st["up"] else 3
        elif args.cmd == "plan":
            print(json.dumps(build_plan(args.topology).to_dict(), indent=2))
        elif args.cmd == "exec":
            cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
            if not cmd:
                raise LabError("exec: give a command after --")
            argv2 = exec_argv(args.name, args.node, cmd)
            os.execvp(argv2[0], argv2)
    except (LabError, nspawn.NspawnError, ValueError) as exc:
        print(f"mhlab: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
