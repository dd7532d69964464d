"""Is the router still exactly as the last successful converge left it? (the role's fast path)

After a full converge the role records a manifest (``multihome converged --record``): the
digest of the role's inputs and the collection, each managed file's SHA-256 (directories:
mode and owner), the packages the router needs and whether systemd runs the monitor. A later
run sends its digest (``multihome converged --verify``) and the router answers in one round
trip: in sync only when the digest is the recorded one, no managed file changed, the packages
are installed, the kernel matches the saved model (the same check ``multihome apply --check``
makes), the monitor runs one LSM per uplink and no change waits for confirmation. Anything
else removes the manifest (not in check mode), so only a new complete converge records one.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
from typing import Callable, Dict, List, Optional, Sequence

from engine.errors import EngineError
from engine.failover.state import load_model, write_atomic
from engine.paths import Paths
from engine.runner import Runner

from . import confirm as cc
from .monitorcheck import monitor_pids, problems

UNITS = ("netops-multihome-restore.service", "netops-multihome-monitor.service")
Entry = Optional[List[object]]


def manifest_path(paths: Paths) -> str:
    return os.path.join(os.path.dirname(paths.state_dir), "converged.json")


def _sha256(path: str) -> str:
    with open(path, "rb") as fh:  # the largest managed file is the runtime tar, well under 1 MB
        return hashlib.sha256(fh.read()).hexdigest()


def _entry(path: str) -> Entry:
    """[content, mode, uid, gid]: content is a file's SHA-256, 'dir', or a link's target."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(st.st_mode):
        content = "dir"
    elif stat.S_ISLNK(st.st_mode):
        content = "link:" + os.readlink(path)
    else:
        content = _sha256(path)
    return [content, oct(stat.S_IMODE(st.st_mode)), st.st_uid, st.st_gid]


def _tree_files(top: str) -> List[str]:
    """Every file under TOP except the interpreter's bytecode caches."""
    found = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        found += [os.path.join(dirpath, name) for name in filenames]
    return found


def snapshot(files: Sequence[str], trees: Sequence[str]) -> Dict[str, Entry]:
    every = list(files) + [f for top in trees for f in _tree_files(top)]
    return {path: _entry(path) for path in sorted(set(every))}


def uses_systemd(service_manager: str, root: str = "") -> bool:
    """The role's own decision (tasks/validate.yml), made again on the router."""
    auto = service_manager == "auto" and os.path.isdir(root + "/run/systemd/system")
    return service_manager == "systemd" or auto


def record(request: dict, paths: Paths) -> dict:
    manifest = {
        "digest": request["digest"],
        "packages": sorted(request.get("packages") or []),
        "use_systemd": uses_systemd(request["service_manager"]),
        "files": list(request["files"]),
        "trees": list(request["trees"]),
    }
    manifest["entries"] = snapshot(manifest["files"], manifest["trees"])
    target = manifest_path(paths)
    write_atomic(target, json.dumps(manifest, sort_keys=True), 0o600)
    return {"recorded": target, "entries": len(manifest["entries"])}


def _missing_packages(names: Sequence[str], runner: Runner) -> List[str]:
    if not names:
        return []
    if shutil.which("dpkg-query"):
        res = runner.run(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Abbrev}\n", *names], check=False)
        installed = {line.split()[0] for line in res.stdout.splitlines() if line.split()[1:2] == ["ii"]}
        return [n for n in names if n not in installed]
    return list(names)


def _unit_problems(failover: bool, runner: Runner) -> List[str]:
    res = runner.run(["systemctl", "is-enabled", *UNITS], check=False)
    states = dict(zip(UNITS, res.stdout.split()))
    wanted = {UNITS[0]: True, UNITS[1]: failover}
    return [f"{unit} is {states.get(unit, 'unknown')}" for unit, on in wanted.items()
            if (states.get(unit) == "enabled") != on]


def _monitor_problems(model: dict, expected_lsm: Callable[[], set], paths: Paths) -> List[str]:
    if model["failover"].get("enabled", True):
        return problems(expected_lsm(), paths)
    return [f"the monitor runs although failover is off: {monitor_pids()}"] if monitor_pids() else []


def _file_problems(manifest: dict) -> List[str]:
    now = snapshot(manifest["files"], manifest["trees"])
    recorded = manifest["entries"]
    changed = sorted(p for p in set(now) | set(recorded) if now.get(p) != recorded.get(p))
    return [f"{p} is not as the last converge left it" for p in changed]


def _problems(request: dict, manifest: Optional[dict], paths: Paths, runner: Runner,
              apply_model: Callable[..., dict], expected_lsm: Callable[[], set]) -> List[str]:
    """The first kind of difference found, cheapest checks first (one is enough to converge)."""
    if manifest is None:
        return ["no record of a completed converge"]
    if manifest.get("digest") != request["digest"]:
        return ["the role's inputs or the collection changed"]
    if manifest["use_systemd"] != uses_systemd(request["service_manager"]):
        return ["the service manager changed"]
    if cc.pending(paths):
        return ["a change waits for confirmation"]
    found = _file_problems(manifest)
    missing = [] if found else _missing_packages(manifest["packages"], runner)
    found = found or [f"package {p} is not installed" for p in missing]
    model = load_model(paths)
    if not found and manifest["use_systemd"]:
        found = _unit_problems(model["failover"].get("enabled", True), runner)
    if not found:
        kernel = apply_model(model, paths, runner, True)
        found = [f"the kernel differs from the model: {c.splitlines()[0]}" for c in kernel["commands"]]
        if kernel["changed"] and not found:
            found = ["the kernel differs from the model"]
    return found or _monitor_problems(model, expected_lsm, paths)


def verify(request: dict, paths: Paths, runner: Runner, apply_model: Callable[..., dict],
           expected_lsm: Callable[[], set], check: bool) -> dict:
    target = manifest_path(paths)
    try:
        with open(target, encoding="utf-8") as fh:
            manifest: Optional[dict] = json.load(fh)
    except (OSError, ValueError):
        manifest = None
    try:
        found = _problems(request, manifest, paths, runner, apply_model, expected_lsm)
    except (EngineError, OSError, KeyError) as exc:
        found = [f"cannot compare: {exc}"]
    if found and not check:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(target)
    return {"in_sync": not found, "reasons": found}
