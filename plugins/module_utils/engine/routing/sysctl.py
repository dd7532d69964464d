"""Kernel settings under /proc/sys: compare and write only what differs.

Keys use the slash form of sysctl.d (``net/ipv4/conf/wan1/rp_filter``) so interface
names containing dots need no escaping.
"""
from __future__ import annotations

import os
from typing import Dict, List

from ..errors import EngineError, ValidationError

PROC = "/proc/sys"


def _path(key: str, proc: str) -> str:
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") for p in parts):
        raise ValidationError("sysctl", key, "a key such as net/ipv4/ip_forward")
    return os.path.join(proc, *parts)


def _absent_interface(key: str, proc: str) -> bool:
    """A per-interface key (``net/ipv4/conf/<if>/...``) of an interface that does not exist
    now: skipped, not an error (the monitor applies it when the interface appears)."""
    parts = key.split("/")
    return (len(parts) > 4 and parts[0] == "net" and parts[2] == "conf"
            and parts[3] not in ("all", "default") and not os.path.isdir(_path("/".join(parts[:4]), proc)))


def read(key: str, proc: str = PROC) -> str:
    try:
        with open(_path(key, proc), encoding="ascii") as fh:
            return fh.read().strip()
    except OSError as exc:
        raise EngineError(f"cannot read sysctl {key}: {exc}") from exc


def apply_sysctl(settings: Dict[str, str], check: bool = False, proc: str = PROC) -> dict:
    """Write the settings that differ; ``changed`` is the same in check mode."""
    before: List[str] = []
    after: List[str] = []
    todo = []
    skipped: List[str] = []
    for key in sorted(settings):
        want = str(settings[key])
        if _absent_interface(key, proc):
            skipped.append(key)
            continue
        have = read(key, proc)
        before.append(f"{key} = {have}")
        after.append(f"{key} = {want}")
        if have != want:
            todo.append((key, want))
    if not check:
        for key, want in todo:
            try:
                with open(_path(key, proc), "w", encoding="ascii") as fh:
                    fh.write(want + "\n")
            except OSError as exc:
                raise EngineError(f"cannot set sysctl {key}={want}: {exc}") from exc
    return {
        "changed": bool(todo),
        "before": "\n".join(before) + "\n",
        "after": "\n".join(after) + "\n",
        "commands": [f"sysctl -w {k.replace('/', '.')}={v}" for k, v in todo],
        "skipped": skipped,
    }
