"""The validation vocabulary every input path shares: names, interface names, marks,
small validators. The role model, both modules' params and the hook's arguments use these
and nothing else, so one rule holds everywhere (``tests/unit`` checks that the role's
``meta/argument_specs.yml`` and the modules' ``argument_spec`` say the same).
"""
from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Sequence

from ..errors import ValidationError

# Uplink and LAN names. They end up in iptables chain names ("NETOPS_MH_MARK_<name>", at most 28
# characters, the kernel's XT_EXTENSION_MAXNAMELEN - 1, so 13 would fit), in nft chain
# names (256), in rt_tables names ("mh_<name>") and in LSM connection names and state files.
# The role has always allowed 12 and inventories rely on that; one rule for every path.
NAME_MAX = 12
NAME_RE = re.compile(rf"^[A-Za-z][A-Za-z0-9_]{{0,{NAME_MAX - 1}}}$")
NAME_RULE = f"a name of 1-{NAME_MAX} letters, digits or '_' starting with a letter"

# Linux interface names: 1-15 bytes (IFNAMSIZ - 1). The kernel also takes any other byte
# but '/', ':' and whitespace; these names are written into nft strings, sysctl paths and
# LSM's config, so only the characters below are accepted.
IFNAME_MAX = 15
IFNAME_RE = re.compile(rf"^(?!\.\.?$)[A-Za-z0-9_.-]{{1,{IFNAME_MAX}}}$")
IFNAME_RULE = f"a Linux interface name: 1-{IFNAME_MAX} of A-Z a-z 0-9 _ . -"

DEFAULT_MARK_MASK = 0xFF00
MARK_MASK_RULE = "a non-zero 32-bit mask such as 0xff00"


def name(option: str, value: object) -> str:
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise ValidationError(option, value, NAME_RULE)
    return value


def ifname(option: str, value: object) -> str:
    if not isinstance(value, str) or not IFNAME_RE.match(value):
        raise ValidationError(option, value, IFNAME_RULE)
    return value


def boolean(option: str, value: object, default: bool) -> bool:
    """true or false (YAML booleans only); ``default`` when unset."""
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ValidationError(option, value, "true or false")
    return value


def choice(option: str, value: object, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValidationError(option, value, "one of " + ", ".join(allowed))
    return str(value)


def integer(option: str, value: object, allowed: str) -> int:
    """An int, or a string in decimal or 0x hex; never a bool."""
    if isinstance(value, bool):
        raise ValidationError(option, value, allowed)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip(), 0)
        except ValueError:
            pass
    raise ValidationError(option, value, allowed)


def bounded(option: str, value: object, low: int, high: int, hex_ok: bool = False) -> int:
    """An int from ``low`` to ``high``; with ``hex_ok`` a decimal or 0x string too."""
    if isinstance(value, str) and hex_ok:
        with contextlib.suppress(ValueError):
            value = int(value, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        if hex_ok:
            allowed = f"an integer (decimal or 0x hex) from {low} to {high:#x}"
        else:
            allowed = f"an integer from {low} to {high}"
        raise ValidationError(option, value, allowed)
    return value


def mark_mask(option: str, value: object) -> int:
    """The conntrack/packet mark mask (default 0xff00)."""
    mask = integer(option, DEFAULT_MARK_MASK if value is None else value, MARK_MASK_RULE)
    if mask <= 0 or mask > 0xFFFFFFFF:
        raise ValidationError(option, value, MARK_MASK_RULE)
    return mask


def dicts(option: str, values: object) -> list[dict]:
    if values is None:
        return []
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, dict) for v in values):
        raise ValidationError(option, values, "a list of dictionaries")
    return list(values)


def unique(option: str, values: Iterable[tuple[int, object]], what: str) -> None:
    """``values``: (index, value); the second use of a value names the first."""
    seen: dict[object, int] = {}
    for i, value in values:
        if value in seen:
            raise ValidationError(
                f"{option}[{i}].{what}",
                value if not isinstance(value, int) or isinstance(value, bool) else hex(value),
                f"a {what} not already used by {option}[{seen[value]}]",
            )
        seen[value] = i
