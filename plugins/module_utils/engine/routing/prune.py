"""Removing what the collection owns on a router and no longer wants.

Owned routing tables are the ``rt_tables.d`` files the engine wrote (its header) for the
role's tables (``mh_`` names): an uplink gone from the inventory leaves one behind, and
removing it (``apply_table`` with ``state: absent``) takes its routes, every rule that
points at it and the file. The uplink's state records go too. ``teardown`` removes all of
them plus the main suppress rule and the owned table of the router's own traffic: what is
left is what the administrator had.
"""
from __future__ import annotations

import os
import shutil
from typing import Any, Dict, Iterable, List

from ..errors import ValidationError
from ..model import naming
from ..paths import Paths
from ..runner import Runner
from . import rt_tables
from .table import apply_table


def owned_tables(etc_dir: str = rt_tables.ETC_DIR) -> List[rt_tables.Mapping]:
    ddir = os.path.join(etc_dir, "rt_tables.d")
    prefix = naming.table_name("")
    out: List[rt_tables.Mapping] = []
    for entry in sorted(os.listdir(ddir)) if os.path.isdir(ddir) else []:
        path = os.path.join(ddir, entry)
        if not entry.startswith(prefix) or not entry.endswith(".conf"):
            continue
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        if text.startswith(rt_tables.HEADER):
            out += rt_tables.parse_file(path, text)
    return out


def _stale_records(paths: Paths, keep: Iterable[str]) -> List[str]:
    if not os.path.isdir(paths.state_dir):
        return []
    keep = set(keep)
    return sorted(os.path.join(paths.state_dir, f) for f in os.listdir(paths.state_dir)
                  if not f.startswith(".") and f.split(".", 1)[0] not in keep)


def _carries(runner: Runner, table_id: int, address: str) -> bool:
    """Whether a rule sends replies from ADDRESS to that table (the session would break)."""
    fam = "-6" if ":" in address else "-4"
    rules = runner.run(["ip", "-N", fam, "rule", "show", "lookup", str(table_id)], check=False).stdout
    return any(f"from {address} " in line or f"from {address}/" in line for line in rules.splitlines())


def prune(model: Dict[str, Any], runner: Runner, paths: Paths, check: bool = False,
          etc_dir: str = rt_tables.ETC_DIR, management: str | None = None,
          allow_management: bool = False) -> Dict[str, Any]:
    """Remove the tables and records of uplinks the model no longer has. The uplink whose
    address carries the management session (MANAGEMENT) is refused unless allowed, before
    anything is removed."""
    keep_tables = {r["name"] for r in model.get("routing") or []}
    keep_uplinks = [u["name"] for u in (model.get("balance") or {}).get("uplinks") or []]
    stale = [m for m in owned_tables(etc_dir) if m.name not in keep_tables]
    for mapping in stale:
        if management and not allow_management and _carries(runner, mapping.table_id, management):
            raise ValidationError(
                "multihome_uplinks", f"without {mapping.name[len(naming.table_name('')):]}",
                f"an inventory that keeps the uplink carrying this management session ({management}), "
                "or multihome_allow_management_uplink_removal: true")
    commands: List[str] = []
    for mapping in stale:
        result = apply_table({"name": mapping.name, "id": mapping.table_id, "state": "absent"},
                             runner, check, etc_dir=etc_dir)
        commands += result["commands"] or [f"rm {mapping.path}"]
    for path in _stale_records(paths, keep_uplinks):
        commands.append(f"rm {path}")
        if not check:
            os.unlink(path)
    return {"changed": bool(commands), "commands": commands}


def teardown(model: Dict[str, Any], runner: Runner, paths: Paths, check: bool = False,
             etc_dir: str = rt_tables.ETC_DIR) -> Dict[str, Any]:
    """Remove every table, rule and record of ours (the balancing ruleset is the caller's)."""
    result = prune({}, runner, paths, check, etc_dir)
    commands = list(result["commands"])
    suppress = next((r["main_suppress_default"] for r in model.get("routing") or []
                     if r.get("main_suppress_default")), None)
    if suppress:
        # The helper rule 'lookup main suppress_prefixlength 0' the uplink tables shared.
        helper = apply_table({"name": naming.table_name("suppress"), "state": "absent",
                              "main_suppress_default": {**suppress, "state": "absent"}},
                             runner, check, etc_dir=etc_dir)
        commands += helper["commands"]
    own = model.get("own_traffic")
    if own:
        table, prio = str(own["table"]), str(own["priority"])
        for fam in (4, 6):
            todo = []
            if runner.run(["ip", f"-{fam}", "route", "show", "table", table], check=False).stdout.strip():
                todo.append(["ip", f"-{fam}", "route", "flush", "table", table])
            rules = runner.run(["ip", f"-{fam}", "rule", "show", "priority", prio], check=False).stdout
            if f"lookup {table}" in rules:
                todo.append(["ip", f"-{fam}", "rule", "del", "priority", prio, "lookup", table])
            commands += [" ".join(argv) for argv in todo]
            for argv in todo if not check else []:
                runner.run(argv)
    for directory in (paths.state_dir, paths.run_dir):
        if os.path.isdir(directory):
            commands.append(f"rm -r {directory}")
            if not check:
                shutil.rmtree(directory)
    return {"changed": bool(commands), "commands": commands}
