"""Entry points of the ruleset half: validate, render, compare, apply (see docs/contracts.md)."""

from __future__ import annotations

import json

from ..errors import EngineError
from ..model.policy import Policy, absent_uplinks, check_interfaces, parse_policy
from ..model.policy import policy_marks as _marks
from ..runner import Runner
from .backend import Backend, Step
from .iptables import Iptables
from .nft import Nftables
from .plan import plan_ruleset


def router_interfaces(runner: Runner) -> set[str]:
    res = runner.run(["ip", "-j", "link", "show"])
    try:
        return {link["ifname"] for link in json.loads(res.stdout or "[]")}
    except (ValueError, KeyError, TypeError) as exc:
        raise EngineError(f"cannot read interfaces from 'ip -j link show': {exc}") from exc


def policy_marks(params: dict) -> dict[str, tuple[int, int]]:
    """Uplink name -> (mark, mask), as the routing half and the failover hook need them."""
    return _marks(parse_policy(params))


_last_parsed: tuple[dict, Policy] | None = None


def policy_of(params: dict) -> Policy:
    """``params`` parsed once per process while they stay the same object: the failover
    monitor handles every event with the model it loaded (``failover.state.load_model``
    returns the same dict while the file is unchanged)."""
    global _last_parsed
    if _last_parsed is None or _last_parsed[0] is not params:
        _last_parsed = (params, parse_policy(params))
    return _last_parsed[1]


def _labelled(parts: list[tuple[str, str]]) -> str:
    return "".join(f"# {label}\n{text}" for label, text in parts if text)


def _load(pending: list[Step]) -> None:
    """Every transaction is test-loaded first, so a rejected one stops the run before any
    backend, table or family has changed (one atomic transaction alone needs no test: a
    refused one changes nothing). One refused for real after earlier ones were committed
    (iptables: each table and family is its own commit) puts every step back."""
    alone = len(pending) == 1 and pending[0].backend.atomic
    for step in [] if alone else pending:
        try:
            step.backend.load(step.script, True)  # type: ignore[arg-type]
        except EngineError as exc:
            raise EngineError(f"{exc}; nothing changed") from exc
    for done, step in enumerate(pending):
        try:
            step.backend.load(step.script, False)  # type: ignore[arg-type]
        except EngineError as exc:
            if alone:
                raise EngineError(f"{exc}; nothing changed") from exc
            failed = []
            for undo in reversed(pending[: done + 1]):
                try:
                    undo.backend.rollback(undo.before)
                except EngineError as again:
                    failed.append(f"{undo.backend.label}: {again}")
            if failed:
                undone = "; ".join(failed)
                raise EngineError(f"{exc}; partially applied, and the rollback failed: {undone}") from exc
            raise EngineError(f"{exc}; partially applied, rolled back to the previous rules") from exc


def apply_policy(
    source: dict | Policy,
    runner: Runner,
    check: bool = False,
    states: dict[str, str] | None = None,
    other_backend: bool = True,
) -> dict:
    """Make the kernel's balancing ruleset match ``source``: the module's options, or the
    :class:`Policy` already parsed from them (the typed model, see ``policy_of``).

    Returns {"changed", "before", "after", "ruleset", "commands", "changes"}. Validation
    (including that every interface exists) happens before anything is read or changed.
    With ``check`` nothing is applied but the result is computed the same way.
    ``other_backend=False`` (the failover hook's hot path) skips reading the other
    backend for leftovers and the interface check: the converge or ``multihome apply``
    that installed the model has done both, and rules match interfaces by name, so a
    missing one cannot make the transaction fail.
    """
    policy = source if isinstance(source, Policy) else parse_policy(source)
    # The hot path (other_backend=False) reads the links only when an uplink may be absent.
    if policy.present and (other_backend or any(u.may_be_absent for u in policy.uplinks)):
        links = router_interfaces(runner)
        if other_backend:
            check_interfaces(policy, links)
        absent = absent_uplinks(policy, links)
        if absent:  # an uplink whose interface is missing is down, whatever was recorded
            states = {u.name: "down" if u.name in absent else (states or {}).get(u.name, u.state)
                      for u in policy.uplinks}
    ruleset = plan_ruleset(policy, states) if policy.present else None
    nftables: list[Backend] = [Nftables(runner)]
    iptables: list[Backend] = [Iptables(runner, 4), Iptables(runner, 6)]
    # The wanted backend goes first; leftovers of the other backend are removed after it.
    wanted, other = (nftables, iptables) if policy.backend == "nftables" else (iptables, nftables)
    steps = [b.step(ruleset) for b in wanted]
    if other_backend:
        steps += [b.step(None) for b in other if b.may_hold_ours()]

    pending = [step for step in steps if step.script]
    commands = [f"{s.backend.command} <<'EOF'\n{s.script}EOF" for s in pending]
    changes = [f"{s.backend.label}: {what}" for s in pending for what in s.changes]
    if pending and not check:
        _load(pending)
    after = _labelled([(s.backend.label, s.after) for s in steps])
    return {
        "changed": bool(pending),
        "before": _labelled([(s.backend.label, s.before) for s in steps]),
        "after": after,
        "ruleset": after,
        "commands": commands,
        "changes": changes,
    }
