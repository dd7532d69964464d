"""Entry points of the ruleset half: validate, render, compare, apply (see docs/contracts.md)."""

from __future__ import annotations

import json
import shutil

from ..errors import EngineError
from ..model.policy import Policy, parse_policy
from ..model.policy import policy_marks as _marks
from ..runner import Runner
from . import iptables, nft
from .choice import active_pins, plan_choice, plan_choice_v6


def router_interfaces(runner: Runner) -> set[str]:
    res = runner.run(["ip", "-j", "link", "show"])
    try:
        return {link["ifname"] for link in json.loads(res.stdout or "[]")}
    except (ValueError, KeyError, TypeError) as exc:
        raise EngineError(f"cannot read interfaces from 'ip -j link show': {exc}") from exc


def policy_marks(params: dict) -> dict[str, tuple[int, int]]:
    """Uplink name -> (mark, mask), as the routing half and the failover hook need them."""
    return _marks(parse_policy(params))


def _nft_part(policy: Policy | None, runner: Runner, states) -> tuple[str, str, str | None, list[str]]:
    wanted = None
    if policy is not None:
        wanted = nft.render_chains(
            policy, plan_choice(policy, states), active_pins(policy, states), plan_choice_v6(policy, states)
        )
    current = nft.read_current(runner)
    script = nft.plan(current, wanted)
    before = current or ""
    after = nft.format_table(wanted) if wanted else ""
    return before, after, script, nft.describe(current, wanted)


def _ipt_part(policy: Policy | None, runner: Runner, states, family: int):
    wanted = None
    if policy is not None:
        wanted = iptables.render_tables(
            policy,
            plan_choice(policy, states),
            active_pins(policy, states),
            family,
            plan_choice_v6(policy, states),
        )
    current = iptables.read_current(runner, family)
    script = iptables.plan(current, wanted)
    return (
        iptables.current_text(current),
        iptables.format_tables(wanted or {}),
        script,
        iptables.describe(current, wanted, family),
    )


def _labelled(parts: list[tuple[str, str]]) -> str:
    return "".join(f"# {label}\n{text}" for label, text in parts if text)


def apply_policy(
    params: dict,
    runner: Runner,
    check: bool = False,
    states: dict[str, str] | None = None,
    other_backend: bool = True,
) -> dict:
    """Make the kernel's balancing ruleset match ``params`` (the module's options).

    Returns {"changed", "before", "after", "ruleset", "commands", "changes"}. Validation
    (including that every interface exists) happens before anything is read or changed.
    With ``check`` nothing is applied but the result is computed the same way.
    ``other_backend=False`` (the failover hook's hot path) skips reading the other
    backend for leftovers: a converge or ``multihome apply`` has already removed them.
    """
    present = (params.get("state") or "present") == "present"
    policy = parse_policy(params, router_interfaces(runner) if present else None)
    use_nft = policy.backend == "nftables"
    nft_policy = policy if present and use_nft else None
    ipt_policy = policy if present and not use_nft else None

    # The wanted backend goes first; leftovers of the other backend are removed after it.
    nft_steps, ipt_steps = [], []
    if use_nft or (other_backend and shutil.which(nft.NFT) and nft.read_current(runner) is not None):
        before, after, script, changes = _nft_part(nft_policy, runner, states)
        nft_steps.append(
            (
                "nftables",
                before,
                after,
                script,
                changes,
                (lambda s: nft.check(s, runner), lambda s: nft.apply(s, runner)),
            )
        )
    for family in (4, 6):
        if not use_nft or (other_backend and shutil.which(iptables.tools(family)[0])):
            before, after, script, changes = _ipt_part(ipt_policy, runner, states, family)
            label = "iptables" if family == 4 else "ip6tables"
            ipt_steps.append(
                (
                    label,
                    before,
                    after,
                    script,
                    changes,
                    (
                        lambda s, f=family: iptables.check(s, runner, f),
                        lambda s, f=family: iptables.apply(s, runner, f),
                    ),
                )
            )
    steps = nft_steps + ipt_steps if use_nft else ipt_steps + nft_steps

    commands = []
    changes: list[str] = []
    for label, _before, _after, script, what, _fns in steps:
        if script:
            tool = "nft -f -" if label == "nftables" else f"{label}-restore --noflush"
            commands.append(f"{tool} <<'EOF'\n{script}EOF")
            changes += [f"{label}: {w}" for w in what]
    changed = bool(commands)
    if changed and not check:
        # Every transaction is test-loaded first, so a rejected one stops the run before
        # any other backend or family has been changed.
        pending = [(step[3], step[5]) for step in steps if step[3]]
        for script, fns in pending:
            fns[0](script)  # test-load
        for script, fns in pending:
            fns[1](script)  # apply
    before = _labelled([(s[0], s[1]) for s in steps])
    after = _labelled([(s[0], s[2]) for s in steps])
    return {
        "changed": changed,
        "before": before,
        "after": after,
        "ruleset": after,
        "commands": commands,
        "changes": changes,
    }
