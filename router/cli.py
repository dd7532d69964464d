"""Body of the ``multihome`` command on the router.

  multihome status [--json|--watch]    uplinks: state, reason, since, weight, tier, flows, last event
  multihome flows [--top N] [--json]   conntrack entries per uplink, top talkers by bytes first
  multihome drain UPLINK / undrain UPLINK
                                       take an uplink out of rotation for new flows (its flows stay)
  multihome apply [--check] [--json] [--only PART ...] [--confirm SECONDS]
                                       make the kernel match the saved model; with --confirm,
                                       revert to the last confirmed model unless confirmed
  multihome confirm                    keep the change applied with --confirm (or armed)
  multihome arm --seconds SECONDS      arm the revert timer before a change (the role does)
  multihome boot                       apply, then start the monitor (hosts without systemd)
  multihome monitor --foreground|--start|--stop|--restart|--status
  multihome monitor --verify [--wait S]  one monitor with one LSM per uplink, stable (JSON)
  multihome teardown [--check] [--json]
                                       remove every table, rule, ruleset and record of ours
  multihome converged --verify [--check] | --record
                                       the role's fast path (JSON on stdin and stdout)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Dict, List, Optional

from engine.errors import EngineError
from engine.failover.state import (
    StateLock,
    all_states,
    apply_recorded,
    load_model,
    log_event,
    uplink_names,
)
from engine.paths import Paths
from engine.runner import LocalRunner, Runner

from . import confirm as cc
from . import monitor as mon
from .links import read_carriers
from .monitorcheck import verify as verify_monitor


# Output goes through these rather than print(): ansible-test reserves print() for modules.
def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


PARTS = ("sysctl", "routing", "main-default", "balance", "own-traffic")
DAEMON_LOG = "/var/log/netops-multihome/monitor.log"


def _apply_own_traffic(model: dict, paths: Paths, runner: Runner, check: bool) -> dict:
    """After routing and balancing: copy the best live uplink's default route from its table,
    with the recorded states read under the hook's lock, as the balancing does."""
    from engine.routing.own_traffic import apply_own_default

    if check:
        return apply_own_default(model, all_states(paths, uplink_names(model)), runner, check)
    with StateLock(paths):
        return apply_own_default(model, all_states(paths, uplink_names(model)), runner, check)


def apply_model(model: dict, paths: Paths, runner: Runner, check: bool, parts=PARTS,
                management: Optional[str] = None, allow_management: bool = False) -> Dict[str, Any]:
    """Sysctl, routing tables, main default, balancing (with the recorded states)."""
    from engine.routing.main_default import ensure_main_default
    from engine.routing.sysctl import apply_sysctl
    from engine.routing.table import apply_table
    from engine.ruleset.mark_users import check_policy_marks

    # Before any part changes: no other user of the router's marks may share our bits.
    check_policy_marks(model["balance"], runner)
    results: Dict[str, Any] = {}
    if "sysctl" in parts:
        results["sysctl"] = apply_sysctl(model.get("sysctl") or {}, check)
    if "routing" in parts:
        from engine.routing.prune import prune

        results["routing"] = [apply_table(p, runner, check) for p in model.get("routing") or []]
        # Uplinks gone from the inventory: their tables, rules, rt_tables.d entries, records.
        results["routing"].append(prune(model, runner, paths, check, management=management,
                                        allow_management=allow_management))
    if "main-default" in parts and model.get("local_default"):
        results["main-default"] = ensure_main_default(model["local_default"], runner, check)
    if "balance" in parts:
        results["balance"] = apply_recorded(model["balance"], runner, check, paths,
                                            use_records=model["failover"].get("enabled", True))
    if "own-traffic" in parts and model.get("own_traffic"):
        results["own-traffic"] = _apply_own_traffic(model, paths, runner, check)
    changed = any(
        (any(r["changed"] for r in v) if isinstance(v, list) else v["changed"]) for v in results.values()
    )
    commands: List[str] = []
    for v in results.values():
        for r in v if isinstance(v, list) else [v]:
            commands += r.get("commands") or []
    return {"changed": changed, "commands": commands, "parts": results}


def _status(args, paths: Paths, runner: Runner) -> int:
    from engine.ruleset.apply import apply_policy

    from .status import collect, render_text

    if args.watch:
        return _watch(args, paths, runner)
    model = load_model(paths)
    states = all_states(paths, uplink_names(model))
    try:
        # The wanted backend only (no leftovers of the other one, no interface check):
        # one read of our ruleset instead of a process per table, family and backend.
        wanted = apply_policy(model["balance"], runner, check=True, states=states, other_backend=False)
        drift = wanted["changed"]
    except EngineError:
        drift = True
    status = collect(model, paths, runner, drift)
    if args.json:
        _out(json.dumps(status, indent=2, sort_keys=True))
    else:
        sys.stdout.write(render_text(status))
    return 0


def _watch(args, paths: Paths, runner: Runner) -> int:
    """``status --watch``: redraw the table in place (cursor home, clear screen) until Ctrl-C."""
    once = argparse.Namespace(**{**vars(args), "watch": False})
    try:
        while True:
            sys.stdout.write("\x1b[H\x1b[2J" + time.strftime("%H:%M:%S "))
            _status(once, paths, runner)
            sys.stdout.flush()
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0


def _flows(args, paths: Paths, runner: Runner) -> int:
    from .flows import flows_by_uplink, render_flows

    model = load_model(paths)
    fo = model["failover"]["uplinks"]
    view = flows_by_uplink(runner, {n: int(fo[n]["mark"]) for n in uplink_names(model)},
                           int(model["balance"].get("mark_mask") or 0xFF00), args.top)
    sys.stdout.write(json.dumps(view, indent=2, sort_keys=True) + "\n" if args.json else render_flows(view))
    return 0


def _drain(args, paths: Paths, runner: Runner) -> int:
    from .drain import set_drained

    result = set_drained(paths, runner, args.uplink, args.command == "drain")
    _out(result.line())
    return 0


def _apply(args, paths: Paths, runner: Runner) -> int:
    if not args.check:
        cc.revert_if_stale(paths, runner, apply_model)  # at boot, after a reboot mid-confirm
    if args.model == "-":  # the model about to be installed, for a preflight check
        try:
            model = json.loads(sys.stdin.read())
        except ValueError as exc:
            raise EngineError(f"--model -: not a JSON model: {exc}") from exc
    else:
        model = load_model(paths)
    started = time.monotonic()
    if args.confirm and not args.check:
        cc.arm(paths, args.confirm, cc.cli_argv())  # before any change: a crash mid-apply reverts too
    result = apply_model(model, paths, runner, args.check, tuple(args.only or PARTS),
                         args.management, args.allow_management_removal)
    if not args.check and not cc.pending(paths):
        cc.save_confirmed(paths)
    result["seconds"] = round(time.monotonic() - started, 3)
    if result["changed"] and not args.check:
        log_event(paths, f"apply parts={','.join(args.only or PARTS)} changed "
                         f"commands={len(result['commands'])}", "multihome")
    if args.json:
        _out(json.dumps(result, indent=2, sort_keys=True, default=str))
    else:
        verb = "would change" if args.check else "changed"
        _out(f"{verb if result['changed'] else 'unchanged'} ({result['seconds']}s)")
        for cmd in result["commands"]:
            _out("  " + cmd.splitlines()[0])
        if args.confirm and not args.check:
            _out(f"reverts in {args.confirm:g}s unless confirmed: multihome confirm")
    return 0


def _confirm(args, paths: Paths, runner: Runner) -> int:
    _out("confirmed" if cc.confirm(paths) else "nothing was pending; the model in force is confirmed")
    return 0


def _arm(args, paths: Paths, runner: Runner) -> int:
    if not os.path.isfile(cc.confirmed_path(paths)):
        _out("not armed: no confirmed model yet (first deployment), nothing to go back to")
        return 0
    cc.arm(paths, args.seconds, cc.cli_argv())
    _out(f"armed: reverts in {args.seconds:g}s unless confirmed")
    return 0


def _revert(args, paths: Paths, runner: Runner) -> int:
    try:
        cc.revert_after(paths, runner, args.after, args.token, apply_model)
    except (EngineError, OSError) as exc:  # detached: the event log is the only reader
        log_event(paths, f"confirm: revert failed: {exc}", "multihome")
        return 1
    return 0


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError(f"{text}: seconds between 0 and 86400")
    return value


def _monitor_argv() -> List[str]:
    return [os.path.realpath(sys.argv[0]), "monitor", "--foreground"]


def _expected_lsm(paths: Paths, runner: Runner) -> set:
    """The uplinks that should have an LSM running now."""
    with open(paths.lsm_conf, encoding="utf-8") as fh:
        expected = set(mon.split_lsm_config(fh.read()))
    # An absent uplink (its interface does not exist) has no LSM until it appears.
    links = read_carriers(runner)
    uplinks = load_model(paths)["balance"]["uplinks"]
    return expected - {u["name"] for u in uplinks if u["interface"] not in links}


def _verify_monitor(args, paths: Paths, runner: Runner) -> int:
    result = verify_monitor(_expected_lsm(paths, runner), paths, args.wait)
    _out(json.dumps(result, sort_keys=True))
    return 0 if result["ok"] else 1


def _monitor(args, paths: Paths, runner: Runner) -> int:
    if args.action == "verify":
        return _verify_monitor(args, paths, runner)
    if args.action == "foreground":
        return mon.Monitor(paths, runner).run()
    if args.action in ("stop", "restart"):
        stopped = mon.stop(paths)
        if args.action == "stop":
            _out("stopped" if stopped else "not running")
            return 0
    if args.action in ("start", "restart"):
        pid = mon.running_pid(paths)
        if pid is None:
            pid = mon.start_detached(paths, _monitor_argv(), DAEMON_LOG)
            _out(f"started pid {pid}")
        else:
            _out(f"already running pid {pid}")
        return 0
    pid = mon.running_pid(paths)
    _out(f"running pid {pid}" if pid else "not running")
    return 0 if pid else 3


def _boot(args, paths: Paths, runner: Runner) -> int:
    cc.revert_if_stale(paths, runner, apply_model)
    model = load_model(paths)
    started = time.monotonic()
    result = apply_model(model, paths, runner, False)
    log_event(paths, f"boot apply changed={result['changed']} ms={(time.monotonic() - started) * 1000:.0f}",
              "multihome")
    if model["failover"].get("enabled", True) and not args.no_monitor:
        mon.stop(paths)
        pid = mon.start_detached(paths, _monitor_argv(), DAEMON_LOG)
        _out(f"applied ({'changed' if result['changed'] else 'unchanged'}); monitor pid {pid}")
    else:
        _out(f"applied ({'changed' if result['changed'] else 'unchanged'})")
    return 0


def _at_least(low: float, kind: type = float):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"{text!r}: allowed is a {kind.__name__} of at least {low:g}")
        return value
    return parse


def _teardown(args, paths: Paths, runner: Runner) -> int:
    """Remove the kernel state the collection owns (the role removes the files after)."""
    from engine.routing.prune import teardown
    from engine.ruleset.apply import apply_policy

    from .operability import written_files

    model = load_model(paths)
    if not args.check:
        mon.stop(paths)
    backend = model["balance"].get("backend")
    ruleset = apply_policy({"state": "absent", "backend": backend}, runner, args.check)
    files = [path for path in written_files(paths) if os.path.exists(path)]
    result = teardown(model, runner, paths, args.check)
    result["commands"] = ruleset["commands"] + result["commands"] + [f"rm {path}" for path in files]
    result["changed"] = result["changed"] or ruleset["changed"] or bool(files)
    for path in files if not args.check else []:
        os.unlink(path)
    if not args.check:
        log_event(paths, f"teardown commands={len(result['commands'])}", "multihome")
    _out(json.dumps(result, indent=2, sort_keys=True) if args.json else
         ("would change" if args.check else "removed") if result["changed"] else "nothing of ours left")
    return 0


def _converged(args, paths: Paths, runner: Runner) -> int:
    from . import converged

    try:
        request = json.loads(sys.stdin.read())
    except ValueError as exc:
        raise EngineError(f"converged: stdin is not JSON: {exc}") from exc
    if args.record:
        result = converged.record(request, paths)
    else:
        result = converged.verify(request, paths, runner, apply_model, lambda: _expected_lsm(paths, runner),
                                  args.check)
    _out(json.dumps(result, sort_keys=True))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="multihome", description="netops.multihome router control")
    sub = p.add_subparsers(dest="command", required=True)
    st = sub.add_parser("status", help="uplink states, flows and last events")
    shown = st.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_true", help="docs/status-schema.md")
    shown.add_argument("--watch", action="store_true", help="refresh in place until Ctrl-C")
    st.add_argument("--interval", type=_at_least(0.2), default=2.0, help="--watch refresh seconds")
    fl = sub.add_parser("flows", help="conntrack entries per uplink, top talkers by bytes first")
    fl.add_argument("--top", type=_at_least(1, int), default=10, help="flows shown per uplink (default 10)")
    fl.add_argument("--json", action="store_true")
    for verb, text in (("drain", "out of rotation for new flows, its flows kept (persists)"),
                       ("undrain", "back into rotation")):
        sub.add_parser(verb, help=text).add_argument("uplink")
    ap = sub.add_parser("apply", help="make the kernel match /etc/netops-multihome/model.json")
    ap.add_argument("--check", action="store_true", help="report what would change, change nothing")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--only", action="append", choices=PARTS)
    ap.add_argument("--model", help="'-': read the model from stdin instead of the saved one")
    ap.add_argument("--management", help="address of the management session: refuse removing its uplink")
    ap.add_argument("--allow-management-removal", action="store_true")
    ap.add_argument("--confirm", type=_seconds, metavar="SECONDS",
                    help="revert to the last confirmed model unless 'multihome confirm' runs in time")
    sub.add_parser("confirm", help="keep the change applied with --confirm")
    ar = sub.add_parser("arm", help="arm the revert timer before a change (used by the role)")
    ar.add_argument("--seconds", type=_seconds, required=True)
    rv = sub.add_parser("revert", help=argparse.SUPPRESS)
    rv.add_argument("--after", type=float, required=True)
    rv.add_argument("--token", required=True)
    bt = sub.add_parser("boot", help="apply the saved model and start the monitor (no systemd)")
    bt.add_argument("--no-monitor", action="store_true")
    td = sub.add_parser("teardown", help="remove every table, rule, ruleset and record of ours")
    td.add_argument("--check", action="store_true")
    td.add_argument("--json", action="store_true")
    cv = sub.add_parser("converged", help="the role's fast path: is the router as the last converge left it")
    way = cv.add_mutually_exclusive_group(required=True)
    way.add_argument("--verify", action="store_true", help="compare with the last converge (digest on stdin)")
    way.add_argument("--record", action="store_true", help="record a completed converge (manifest on stdin)")
    cv.add_argument("--check", action="store_true", help="--verify: keep the record even if stale")
    mo = sub.add_parser("monitor", help="LSM plus the link watcher")
    group = mo.add_mutually_exclusive_group(required=True)
    for action in ("foreground", "start", "stop", "restart", "status", "verify"):
        group.add_argument(f"--{action}", dest="action", action="store_const", const=action)
    mo.add_argument("--wait", type=float, default=15.0,
                    help="--verify: seconds to wait for the monitor and one LSM per uplink")
    return p


def main(argv: List[str], paths: Optional[Paths] = None, runner: Optional[Runner] = None) -> int:
    args = parser().parse_args(argv)
    paths = paths or Paths.default()
    runner = runner or LocalRunner()
    handlers = {"status": _status, "apply": _apply, "monitor": _monitor, "boot": _boot,
                "confirm": _confirm, "arm": _arm, "revert": _revert, "teardown": _teardown,
                "drain": _drain, "undrain": _drain, "flows": _flows, "converged": _converged}
    try:
        return handlers[args.command](args, paths, runner)
    except EngineError as exc:
        _err(f"multihome {args.command}: {exc}")
        return 1
