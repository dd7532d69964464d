"""One routing table and the policy rules pointing at it: plan against the kernel, apply.

Entry point: ``apply_table(params, runner, check=False)``. The change is computed by one
function (``plan_table``) in check mode and in a real run, and applied as one
``ip -batch -`` process per address family, ordered so nothing that stays is ever missing:
routes are replaced in place, new rules go in before the rules they supersede go out,
removals come last. ``ip -batch`` is not a transaction (it stops at the first failing line
and keeps the lines before it), so every line has its inverse in the plan: on a failure
the applied lines are undone in reverse order, the rt_tables.d file is put back, and the
error says "partially applied, rolled back".
"""
from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import EngineError, ValidationError
from ..model.table_spec import MAIN_TABLE, TableSpec, parse_params
from ..runner import Runner
from . import iproute, rt_tables
from .iproute import FULL_MASK, Link, Route, Rule
from .learned import with_learned

FAMILIES = (4, 6)


@dataclass
class KernelState:
    routes: dict[int, list[Route]]  # family -> routes of our table
    rules: dict[int, list[Rule]]  # family -> every rule, kernel order
    links: dict[str, Link]


@dataclass
class FileState:
    path: str
    mappings: list[tuple[int, str]]  # what our rt_tables.d file holds now

    @property
    def exists(self) -> bool:
        return os.path.exists(self.path)


@dataclass
class Plan:
    table_id: int | None
    batches: dict[int, list[str]] = field(default_factory=dict)  # family -> ip -batch lines
    inverses: dict[int, list[str]] = field(default_factory=dict)  # family -> undo of each line
    write_file: bool = False
    remove_file: bool = False
    before: str = ""
    after: str = ""

    def commands(self) -> list[str]:
        return [f"ip -{fam} {line}" for fam in FAMILIES for line in self.batches.get(fam, [])]


def plan_changed(plan: Plan) -> bool:
    """The single definition of 'changed', shared by check mode and real runs."""
    return plan.write_file or plan.remove_file or any(plan.batches.values())


def read_kernel(runner: Runner, table_id: int | None, needed: Sequence[int]) -> KernelState:
    routes: dict[int, list[Route]] = {}
    rules: dict[int, list[Rule]] = {}
    for fam in FAMILIES:
        try:
            rules[fam] = iproute.read_rules(runner, fam)
            routes[fam] = iproute.read_routes(runner, fam, table_id) if table_id else []
        except EngineError:
            # a kernel without IPv6 is fine as long as nothing IPv6 is asked for
            if fam in needed:
                raise
            rules[fam], routes[fam] = [], []
    return KernelState(routes, rules, iproute.read_links(runner))


def check_against_kernel(spec: TableSpec, kernel: KernelState) -> None:
    """Bad input that only the router's own state reveals; raised before any change."""
    links = kernel.links
    local = {a for link in links.values() for a in link.addresses}
    for i, r in enumerate(spec.routes):
        if r.dev is not None and r.dev not in links:
            raise ValidationError(f"routes[{i}].dev", r.dev,
                                  f"an existing interface: {', '.join(sorted(links))}")
        if r.src is not None and r.src not in local:
            raise ValidationError(f"routes[{i}].src", r.src,
                                  "an address configured on one of this router's interfaces")
        if r.gateway is not None and not r.onlink:
            gw = ipaddress.ip_address(r.gateway)
            if gw.is_link_local:
                continue
            candidates = [links[r.dev]] if r.dev else list(links.values())
            nets = [ipaddress.ip_network(n) for link in candidates for n in link.prefixes]
            if not any(gw.version == n.version and gw in n and n.prefixlen < n.max_prefixlen
                       for n in nets):
                where = f"dev {r.dev}" if r.dev else "any interface"
                raise ValidationError(f"routes[{i}].gateway", r.gateway,
                                      f"an address inside a connected prefix of {where} "
                                      "(or set onlink: true)")
    for rule in spec.rules:
        for other in kernel.rules.get(rule.family, []):
            if other.priority == rule.priority and other.table != spec.table_id:
                raise ValidationError(
                    "rules.priority", rule.priority,
                    f"a priority no rule of another table uses; IPv{rule.family} rule "
                    f"'{other.text()}' already holds it")


def _route_ready(r: Route, links: dict[str, Link]) -> bool:
    if r.dev is not None and r.dev not in links:
        return False
    local = {a for link in links.values() for a in link.addresses}
    if r.src is not None and r.src not in local:
        return False
    if r.gateway is None or r.onlink or ipaddress.ip_address(r.gateway).is_link_local:
        return True
    candidates = [links[r.dev]] if r.dev else list(links.values())
    gw = ipaddress.ip_address(r.gateway)
    return any(gw.version == n.version and gw in n
               for n in (ipaddress.ip_network(p) for link in candidates for p in link.prefixes))


def ready_routes(spec: TableSpec, kernel: KernelState) -> TableSpec:
    """With ``dev_may_be_absent``, the spec without the routes the kernel cannot take yet
    (device missing, src or gateway's prefix not configured on it): the uplink is absent."""
    if not spec.dev_may_be_absent:
        return spec
    return dataclasses.replace(spec, routes=tuple(r for r in spec.routes if _route_ready(r, kernel.links)))


def check_ownership(spec: TableSpec, kernel: KernelState, files: FileState, table_id: int | None) -> None:
    """A table is ours once our rt_tables.d file maps it; before that, an explicit id that
    already holds routes or rules belongs to someone else and is never taken over."""
    if table_id is None or (table_id, spec.name) in files.mappings:
        return
    found = [f"route '{r.text()}'" for fam in FAMILIES for r in kernel.routes.get(fam, [])]
    found += [f"rule '{r.text()}'" for fam in FAMILIES for r in kernel.rules.get(fam, [])
              if r.table == table_id]
    if found:
        more = f" and {len(found) - 3} more" if len(found) > 3 else ""
        raise ValidationError(
            "id", table_id,
            f"a table id nothing else uses: table {table_id} already holds "
            f"{', '.join(found[:3])}{more}, not created by netops.multihome (no {files.path})")


def read_file_state(name: str, etc_dir: str) -> FileState:
    path = rt_tables.own_path(name, etc_dir)
    mappings: list[tuple[int, str]] = []
    if os.path.isfile(path):
        with open(path, encoding="utf-8", errors="replace") as fh:
            mappings = [(m.table_id, m.name) for m in rt_tables.parse_file(path, fh.read())]
    return FileState(path, mappings)


def _delete_would_hit(spec: Rule, rule: Rule) -> bool:
    """Whether the kernel's rule delete lookup matches ``rule`` for a delete built from ``spec``.

    The kernel treats every attribute left out of a delete request as a wildcard, and
    ignores 'not' entirely.
    """
    mask = spec.fwmask if spec.fwmask is not None else (FULL_MASK if spec.fwmark else 0)
    return (rule.table == spec.table and rule.priority == spec.priority
            and (not spec.iif or rule.iif == spec.iif)
            and (not spec.oif or rule.oif == spec.oif)
            and (not spec.fwmark or rule.fwmark == spec.fwmark)
            and (not mask or rule.fwmask == mask)
            and (spec.suppress_prefixlength is None
                 or rule.suppress_prefixlength == spec.suppress_prefixlength)
            and (spec.src is None or rule.src == spec.src)
            and (spec.dst is None or rule.dst == spec.dst))


def _check_deletes(existing: list[Rule], adds: list[Rule], dels: list[Rule]) -> None:
    sim = list(existing)
    for new in adds:  # the kernel appends after every rule of lower or equal priority
        pos = next((k for k, r in enumerate(sim) if r.priority > new.priority), len(sim))
        sim.insert(pos, new)
    for gone in dels:
        hit = next(r for r in sim if _delete_would_hit(gone, r))
        if hit != gone:
            raise EngineError(
                f"cannot remove rule '{gone.text()}' safely: a delete would hit "
                f"'{hit.text()}' first (same priority); remove one of them by hand")
        sim.remove(hit)


def _route_order(r: Route) -> tuple[int, str]:
    return (1 if r.gateway else 0, r.dst)


def _plan_family(spec: TableSpec, fam: int, kernel: KernelState,
                 table_id: int) -> tuple[list[tuple[str, str]], list[Route], list[Rule]]:
    """(line, inverse line) pairs, the routes and the rules after."""
    existing = kernel.routes.get(fam, [])
    present = spec.state == "present"
    want = [r for r in spec.routes if r.family == fam]
    want_keys = {r.key() for r in want}
    replaces = sorted((r for r in want if r not in existing), key=_route_order)
    route_dels = [r for r in existing if r.key() not in want_keys and (spec.purge or not present)]
    route_dels.sort(key=_route_order, reverse=True)
    after_routes = [r for r in existing if r.key() not in want_keys and r not in route_dels] + want

    all_rules = kernel.rules.get(fam, [])
    ours = [r for r in all_rules if r.table == table_id]
    want_rules = [r for r in spec.rules if r.family == fam]
    prios = {r.priority for r in want_rules}
    adds = [r for r in want_rules if r not in ours]
    dels = [r for r in ours if r not in want_rules and (spec.purge or not present or r.priority in prios)]
    shown = [r for r in ours if r not in dels] + adds
    if spec.suppress_priority is not None:
        helper = Rule(fam, spec.suppress_priority, MAIN_TABLE, suppress_prefixlength=0)
        wanted = spec.suppress_state == "present" and (fam in spec.families or not present)
        if wanted and helper not in all_rules:
            adds.append(helper)
        elif spec.suppress_state == "absent" and helper in all_rules:
            dels.append(helper)
        if helper in adds or (helper in all_rules and helper not in dels):
            shown.append(helper)
    _check_deletes(all_rules, adds, dels)

    t = str(table_id)
    old = {r.key(): r for r in existing}

    def route(verb: str, r: Route) -> str:
        return " ".join(["route", verb, *r.spec(), "table", t])

    def rule(verb: str, r: Rule) -> str:
        return " ".join(["rule", verb, *r.spec()])

    lines = [(route("replace", r), route("replace", old[r.key()]) if r.key() in old else route("del", r))
             for r in replaces]
    lines += [(rule("add", r), rule("del", r)) for r in adds]
    lines += [(rule("del", r), rule("add", r)) for r in dels]
    lines += [(route("del", r), route("replace", r)) for r in route_dels]
    return lines, after_routes, sorted(shown, key=lambda r: (r.priority, r.table))


def _render(name: str, table_id: int | None, mappings: list[tuple[int, str]],
            routes: dict[int, list[Route]], rules: dict[int, list[Rule]], path: str) -> str:
    names = {table_id: name} if table_id else {}
    out = [f"# {path}"] + [f"{i}\t{n}" for i, n in mappings]
    for fam in FAMILIES:
        out.append(f"# ip -{fam} route show table {name}")
        out += [r.text() for r in sorted(routes.get(fam, []), key=_route_order)]
        out.append(f"# ip -{fam} rule show (rules of table {name} and the main suppress rule)")
        out += [r.text(names) for r in rules.get(fam, [])]
    return "\n".join(out) + "\n"


def plan_table(spec: TableSpec, kernel: KernelState, files: FileState,
               table_id: int | None) -> Plan:
    plan = Plan(table_id)
    present = spec.state == "present"
    want_map = [(table_id, spec.name)] if present and table_id else []
    plan.write_file = present and files.mappings != want_map
    plan.remove_file = not present and files.exists
    before_routes, before_rules, after_routes, after_rules = {}, {}, {}, {}
    for fam in FAMILIES:
        helper_prio = spec.suppress_priority
        before_rules[fam] = [r for r in kernel.rules.get(fam, [])
                             if (table_id and r.table == table_id)
                             or (r.table == MAIN_TABLE and r.priority == helper_prio
                                 and r.suppress_prefixlength == 0)]
        before_routes[fam] = kernel.routes.get(fam, [])
        if table_id is None:
            after_routes[fam], after_rules[fam] = [], []
            if helper_prio is not None:
                pairs, _changes, after_rules[fam] = _plan_family(spec, fam, kernel, 0)
                plan.batches[fam] = [line for line, _undo in pairs]
                plan.inverses[fam] = [undo for _line, undo in pairs]
            continue
        pairs, after_routes[fam], after_rules[fam] = _plan_family(spec, fam, kernel, table_id)
        plan.batches[fam] = [line for line, _undo in pairs]
        plan.inverses[fam] = [undo for _line, undo in pairs]
    plan.before = _render(spec.name, table_id, files.mappings, before_routes, before_rules, files.path)
    plan.after = _render(spec.name, table_id, want_map, after_routes, after_rules, files.path)
    return plan


_FAILED_LINE = re.compile(r"Command failed -:(\d+)")


def _run_batches(plan: Plan, runner: Runner) -> None:
    """Run each family's batch; on a failure undo every line applied so far (this batch's
    lines before the failing one, and the earlier batches) and raise."""
    done: list[tuple[int, list[str]]] = []  # (family, inverse lines applied), in order
    for fam in FAMILIES:
        lines = plan.batches.get(fam)
        if not lines:
            continue
        res = runner.run(["ip", f"-{fam}", "-batch", "-"], stdin="\n".join(lines) + "\n", check=False)
        if res.rc == 0:
            done.append((fam, plan.inverses[fam]))
            continue
        found = _FAILED_LINE.search(res.stderr)
        applied = int(found.group(1)) - 1 if found else 0
        done.append((fam, plan.inverses[fam][:applied]))
        error = res.stderr.strip() or res.stdout.strip()
        undo_errors = _undo(done, runner)
        if undo_errors:
            raise EngineError(f"ip -{fam} -batch failed: {error}; partially applied, and the rollback "
                              f"failed too: {'; '.join(undo_errors)}")
        raise EngineError(f"ip -{fam} -batch failed: {error}; partially applied, rolled back")


def _undo(done: list[tuple[int, list[str]]], runner: Runner) -> list[str]:
    errors = []
    for fam, inverses in reversed(done):
        for line in reversed(inverses):
            res = runner.run(["ip", f"-{fam}", *line.split()], check=False)
            if res.rc != 0:
                errors.append(f"ip -{fam} {line}: {res.stderr.strip()}")
    return errors


def apply_table(params: dict[str, Any], runner: Runner, check: bool = False,
                etc_dir: str = rt_tables.ETC_DIR,
                mapping_dirs: Sequence[str] | None = None) -> dict[str, Any]:
    """Make one routing table, its rules and its rt_tables.d entry match ``params``.

    ``params`` are the options of the policy_route_table module (after defaults).
    Returns ``{"changed", "before", "after", "commands", "table"}``; raises
    ``ValidationError`` for bad input before anything is changed and ``EngineError``
    when the kernel refuses a change.
    """
    spec = with_learned(parse_params(params), runner)
    dirs = tuple(mapping_dirs) if mapping_dirs is not None else (etc_dir, rt_tables.SHARE_DIR)
    own = rt_tables.own_path(spec.name, etc_dir)
    own_id = rt_tables.check_conflicts(spec.name, spec.table_id,
                                       rt_tables.read_mappings(dirs), own)
    table_id = spec.table_id if spec.table_id is not None else own_id
    kernel = read_kernel(runner, table_id, spec.families if spec.state == "present" else ())
    spec = ready_routes(spec, kernel)
    check_against_kernel(spec, kernel)
    files = read_file_state(spec.name, etc_dir)
    check_ownership(spec, kernel, files, table_id)
    plan = plan_table(spec, kernel, files, table_id)
    changed = plan_changed(plan)
    result = {"changed": changed, "before": plan.before, "after": plan.after,
              "commands": plan.commands(), "table": {"name": spec.name, "id": table_id}}
    if check or not changed:
        return result
    old_file = None
    if plan.write_file and table_id is not None:
        if files.exists:
            with open(files.path, encoding="utf-8") as fh:
                old_file = fh.read()
        rt_tables.write_own(spec.name, table_id, etc_dir)
    try:
        _run_batches(plan, runner)
    except EngineError:
        if plan.write_file and old_file is None:
            rt_tables.remove_own(spec.name, etc_dir)
        elif plan.write_file:
            with open(files.path, "w", encoding="utf-8") as fh:
                fh.write(old_file)
        raise
    if plan.remove_file:
        rt_tables.remove_own(spec.name, etc_dir)
    # Read back: anything still to do means the kernel normalised our request differently
    # and a re-run would not be a no-op; say so instead of reporting success.
    kernel = read_kernel(runner, table_id, ())
    again = plan_table(spec, kernel, read_file_state(spec.name, etc_dir), table_id)
    if plan_changed(again):
        raise EngineError("kernel state still differs after apply: " + "; ".join(again.commands()))
    result["after"] = again.before
    return result
