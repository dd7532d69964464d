"""The router's own traffic (its DNS forwarder, NTP, apt, VPN endpoints) follows failover.

Unmarked packets the router sends find no uplink rule (those match a source address, an
output interface or a mark), so they used ``main``'s default route, set once. An owned
table, consulted by one rule just after the uplinks' rules and before ``main`` (whose
specific routes the suppress rule at priority 1000 already applied), holds one default
route: a copy of the best live uplink's (lowest tier, then highest weight, then name), an
uplink whose table has a default route now. It is rewritten on every failover event and
repair; with no live uplink it is empty and ``main`` decides. ``main`` itself, and an
administrator's default route in it, are never touched.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

from ..errors import EngineError
from ..runner import Runner

FAMILIES = (4, 6)


def _default(runner: Runner, family: int, table: int) -> Optional[Dict[str, Any]]:
    res = runner.run(["ip", "-j", f"-{family}", "route", "show", "table", str(table), "default"], check=False)
    if res.rc != 0:
        return None  # an empty table does not exist for the kernel
    try:
        routes = json.loads(res.stdout or "[]")
    except ValueError as exc:
        raise EngineError(f"cannot parse the default route of table {table}: {exc}") from exc
    # Unicast only: an uplink table's terminating 'unreachable default' (IPv6 shows it on
    # dev lo) is not a way out.
    routes = [r for r in routes if r.get("dev") and r.get("type", "unicast") == "unicast"]
    return min(routes, key=lambda r: int(r.get("metric", 0))) if routes else None


def _spec(route: Dict[str, Any]) -> List[str]:
    out = ["default"]
    if route.get("gateway"):
        out += ["via", route["gateway"]]
    out += ["dev", route["dev"]]
    if "onlink" in (route.get("flags") or []):
        out.append("onlink")
    return out


def ranked(model: dict, states: Dict[str, str]) -> List[str]:
    """Live uplinks, best first: tier, then weight (higher first), then name."""
    ups = [u for u in model["balance"]["uplinks"]
           if states.get(u["name"], "up") == "up" and u.get("weight", 1) > 0]
    return [u["name"] for u in sorted(ups, key=lambda u: (u.get("tier", 1), -u.get("weight", 1), u["name"]))]


def apply_own_default(model: dict, states: Dict[str, str], runner: Runner, check: bool = False) -> dict:
    """Point the owned table's default route at the best live uplink; add its rule once."""
    own = model.get("own_traffic")
    if not own:
        return {"changed": False, "commands": [], "uplink": None}
    table, priority = int(own["table"]), int(own["priority"])
    tables = {name: int(up["table"]) for name, up in model["failover"]["uplinks"].items()}
    commands: List[List[str]] = []
    chosen: Optional[str] = None
    for fam in FAMILIES:
        rules = runner.run(["ip", "-j", f"-{fam}", "rule", "show", "priority", str(priority)], check=False)
        held = json.loads(rules.stdout or "[]") if rules.rc == 0 else []
        if not any(str(r.get("table")) == str(table) for r in held):
            commands.append(["ip", f"-{fam}", "rule", "add", "priority", str(priority), "lookup", str(table)])
        want = None
        for name in ranked(model, states):
            want = _default(runner, fam, tables[name])
            if want is not None:
                chosen = chosen or name
                break
        have = _default(runner, fam, table)
        if want is not None and (have is None or _spec(have) != _spec(want)):
            commands.append(["ip", f"-{fam}", "route", "replace", *_spec(want), "table", str(table)])
        elif want is None and have is not None:
            commands.append(["ip", f"-{fam}", "route", "del", "default", "table", str(table)])
    if not check:
        for argv in commands:
            runner.run(argv)
    return {"changed": bool(commands), "commands": [" ".join(c) for c in commands], "uplink": chosen}


def current_uplink(model: dict, runner: Runner) -> Optional[str]:
    """The uplink the router's own traffic leaves by now: whose interface the owned table's
    default route uses (IPv4 first); None when own traffic is off or the table is empty."""
    own = model.get("own_traffic")
    if not own:
        return None
    by_interface = {u["interface"]: u["name"] for u in model["balance"]["uplinks"]}
    for fam in FAMILIES:
        route = _default(runner, fam, int(own["table"]))
        if route is not None and route["dev"] in by_interface:
            return by_interface[route["dev"]]
    return None
