"""Other users of the packet and conntrack marks whose bits overlap our mark mask.

kube-proxy (0x4000/0x8000), Cilium (0x0f00), wg-quick (its fwmark) and others test or
set mark bits in their own policy rules and rulesets. When their bits and our mask
overlap, each rewrites or misreads the other's marks and flows leave by the wrong uplink.
``check_mark_mask`` reads every ``ip rule`` with a fwmark, every nftables rule and (with
legacy iptables) every iptables rule that tests or sets a mark, outside our own rules,
table and ``NETOPS_MH_*`` chains, and refuses before anything changes, naming each user and a
mask that would fit.
"""
from __future__ import annotations

import json
import re
from typing import Any, Iterator

from ..errors import EngineError, ValidationError
from ..model.naming import mask_shift
from ..routing.iproute import read_rules
from ..runner import Runner
from .iptables import PREFIX as OUR_CHAIN_PREFIX
from .nft import FAMILY as OUR_FAMILY
from .nft import TABLE as OUR_TABLE

FULL = 0xFFFFFFFF
_XT_MARK = re.compile(r"--(set-xmark|mark|nfmask|ctmask)\s+(0x[0-9a-fA-F]+|\d+)(?:/(0x[0-9a-fA-F]+|\d+))?")


def _mark_key(expr: Any) -> str | None:
    """'meta' or 'ct' when EXPR is the packet or conntrack mark itself."""
    if isinstance(expr, dict):
        for key in ("meta", "ct"):
            if isinstance(expr.get(key), dict) and expr[key].get("key") == "mark":
                return key
    return None


def _set_bits(key: str, value: Any) -> int:
    """Bits a 'KEY mark set VALUE' statement may change."""
    if isinstance(value, dict):
        for op in ("|", "^"):
            args = value.get(op)
            if isinstance(args, list) and len(args) == 2 and isinstance(args[1], int):
                left = args[0]
                if _mark_key(left) == key:
                    return args[1]
                inner = left.get("&") if isinstance(left, dict) else None
                if isinstance(inner, list) and _mark_key(inner[0]) == key and isinstance(inner[1], int):
                    return (~inner[1] | args[1]) & FULL
        args = value.get("&")
        if (isinstance(args, list) and len(args) == 2 and _mark_key(args[0]) == key
                and isinstance(args[1], int)):
            return ~args[1] & FULL
    return FULL


def _nft_bits(expr: Any) -> int:
    """Mark bits one nftables statement tests or sets (0: none)."""
    if not isinstance(expr, dict):
        return 0
    mangle = expr.get("mangle")
    if isinstance(mangle, dict):
        key = _mark_key(mangle.get("key"))
        return _set_bits(key, mangle.get("value")) if key else 0
    match = expr.get("match")
    if isinstance(match, dict):
        left = match.get("left")
        if _mark_key(left):
            return FULL
        args = left.get("&") if isinstance(left, dict) else None
        if isinstance(args, list) and len(args) == 2 and _mark_key(args[0]) and isinstance(args[1], int):
            return args[1]
    return 0


def nft_users(text: str) -> Iterator[tuple[str, int]]:
    """(who, bits) per nftables rule using marks, from ``nft -j list ruleset``."""
    try:
        items = json.loads(text or "{}").get("nftables", [])
    except (ValueError, AttributeError) as exc:
        raise EngineError(f"cannot parse 'nft -j list ruleset': {exc}") from exc
    for item in items:
        rule = item.get("rule") if isinstance(item, dict) else None
        if not isinstance(rule, dict):
            continue
        family, table, chain = rule.get("family"), rule.get("table"), str(rule.get("chain"))
        if (family, table) == (OUR_FAMILY, OUR_TABLE) or chain.startswith(OUR_CHAIN_PREFIX):
            continue
        bits = 0
        for expr in rule.get("expr") or []:
            bits |= _nft_bits(expr)
        if bits:
            yield f"nftables table {family} {table} chain {chain} (mark bits {bits:#x})", bits


def iptables_users(text: str, command: str) -> Iterator[tuple[str, int]]:
    """(who, bits) per rule using marks, from ``iptables-save`` (legacy backend)."""
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
            continue
        if not line.startswith("-A ") or line.split()[1].startswith(OUR_CHAIN_PREFIX):
            continue
        bits = 0
        for opt, value, mask in _XT_MARK.findall(line):
            if opt == "set-xmark":  # mark = (mark & ~mask) ^ value
                bits |= int(value, 0) | int(mask or str(FULL), 0)
            elif opt == "mark":  # --mark value[/mask]
                bits |= int(mask or str(FULL), 0)
            else:  # CONNMARK --nfmask/--ctmask mask
                bits |= int(value, 0)
        if bits:
            yield f"{command} -t {table} '{line}' (mark bits {bits:#x})", bits


def rule_users(runner: Runner, ours: set[tuple[int, int]]) -> Iterator[tuple[str, int]]:
    from ..routing.prune import owned_tables

    # Rules into our own tables are ours, also those of an uplink gone from the inventory
    # that this run is about to remove.
    our_tables = {m.table_id for m in owned_tables()}
    for family in (4, 6):
        try:
            rules = read_rules(runner, family)
        except EngineError:
            continue  # no IPv6 on this kernel
        for rule in rules:
            if rule.fwmark is None or (rule.fwmark, rule.fwmask) in ours or rule.table in our_tables:
                continue
            yield f"ip -{family} rule '{rule.text()}'", rule.fwmask or FULL


def _legacy_iptables(runner: Runner) -> bool:
    res = runner.run(["iptables", "--version"], check=False)
    return res.rc == 0 and "legacy" in res.stdout


def mark_users(runner: Runner, ours: set[tuple[int, int]]) -> list[tuple[str, int]]:
    """Every foreign (who, bits) using marks on this router."""
    found = list(rule_users(runner, ours))
    res = runner.run(["nft", "-j", "list", "ruleset"], check=False)
    if res.rc == 0:
        found += nft_users(res.stdout)
    if _legacy_iptables(runner):
        for command in ("iptables-save", "ip6tables-save"):
            out = runner.run([command], check=False)
            if out.rc == 0:
                found += iptables_users(out.stdout, command.replace("-save", ""))
    return found


def fitting_mask(mask: int, used: int) -> int | None:
    """A mask as wide as MASK (contiguous bits) that no bit of USED touches, closest above."""
    width = bin(mask).count("1")
    start = mask_shift(mask)
    for shift in [*range(start, 33 - width), *range(start - 1, -1, -1)]:
        candidate = ((1 << width) - 1) << shift
        if not candidate & used:
            return candidate
    return None


def check_mark_mask(mask: int, marks: list[int], runner: Runner) -> None:
    """Refuse when a foreign mark user's bits overlap MASK (our rules carry MARKS/MASK)."""
    users = mark_users(runner, {(m, mask) for m in marks})
    clashing = [(who, bits) for who, bits in users if bits & mask]
    if not clashing:
        return
    used = 0
    for _who, bits in users:
        used |= bits
    fit = fitting_mask(mask, used)
    hint = f"; {fit:#x} would fit" if fit is not None else "; no mask of the same width is free"
    raise ValidationError(
        "mark_mask (role: multihome_mark_mask)", hex(mask),
        "mark bits no other user of this router tests or sets; these overlap: "
        + "; ".join(who for who, _bits in clashing) + hint)


def check_policy_marks(params: dict, runner: Runner) -> None:
    """``check_mark_mask`` for the balancing params (nothing to check when absent)."""
    from ..model.policy import parse_policy, policy_marks

    policy = parse_policy(params)
    if policy.present:
        check_mark_mask(policy.mask, [m for m, _mask in policy_marks(policy).values()], runner)
