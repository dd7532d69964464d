"""Stable firewall marks and routing table ids derived from uplink names.

An uplink's mark and table id depend only on its name (CRC-32 of the UTF-8 name), never
on its position in the list, so reordering uplinks changes nothing on the router.
Explicit values win. Two uplinks landing on the same value is an error naming both,
with the explicit setting that resolves it.
"""
from __future__ import annotations

import zlib
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from ..errors import ValidationError
from .vocabulary import DEFAULT_MARK_MASK, MARK_MASK_RULE, integer

# Table ids the collection derives: far from the distro's (253-255) and from the small
# numbers administrators pick by hand.
TABLE_ID_BASE = 10000
TABLE_ID_SPAN = 50000


def _name_hash(name: str) -> int:
    return zlib.crc32(name.encode("utf-8")) & 0xFFFFFFFF


def mask_shift(mask: int) -> int:
    """Position of the lowest set bit of ``mask``."""
    if mask <= 0:
        raise ValidationError("mark_mask", mask, MARK_MASK_RULE)
    return (mask & -mask).bit_length() - 1


def mark_slots(mask: int) -> int:
    """How many distinct non-zero marks fit in the contiguous low run of ``mask``."""
    shift = mask_shift(mask)
    width = 0
    while (mask >> (shift + width)) & 1:
        width += 1
    return (1 << width) - 1


def derive_mark(name: str, mask: int = DEFAULT_MARK_MASK) -> int:
    """A non-zero mark inside ``mask`` computed from the uplink's name."""
    # Capped so the derived mark also fits the 1-999 slot numbering of policy rules.
    slots = min(mark_slots(mask), 255)
    return ((_name_hash(name) % slots) + 1) << mask_shift(mask)


def derive_table_id(name: str) -> int:
    return TABLE_ID_BASE + _name_hash("table:" + name) % TABLE_ID_SPAN


def _pick(
    option: str, items: Sequence[Mapping[str, object]], key: str, derive
) -> List[Tuple[int, int, bool]]:
    """(index, value, explicit) per item."""
    out = []
    for i, item in enumerate(items):
        raw = item.get(key)
        if raw is None:
            out.append((i, derive(str(item["name"])), False))
            continue
        out.append((i, integer(f"{option}[{i}].{key}", raw, "an integer"), True))
    return out


def _check_unique(option: str, key: str, items, picked, fmt) -> None:
    seen: Dict[int, int] = {}
    for i, value, explicit in picked:
        if value in seen:
            j = seen[value]
            how = "set" if explicit else "derived from the name"
            raise ValidationError(
                f"{option}[{i}].{key}",
                fmt(value),
                f"a {key} different from {option}[{j}].{key} ({items[j]['name']!r} has "
                f"{fmt(value)}; {items[i]['name']!r} {how} the same): set "
                f"{option}[{i}].{key} explicitly",
            )
        seen[value] = i


def assign_marks(
    uplinks: Sequence[Mapping[str, object]],
    mask: int = DEFAULT_MARK_MASK,
    option: str = "multihome_uplinks",
) -> Dict[str, int]:
    """Uplink name -> mark; explicit ``mark`` values are validated against ``mask``."""
    picked = _pick(option, uplinks, "mark", lambda n: derive_mark(n, mask))
    allowed = f"a non-zero mark whose bits lie inside multihome_mark_mask {mask:#x}"
    for i, value, explicit in picked:
        if explicit and (value <= 0 or value > 0xFFFFFFFF or value & ~mask):
            raise ValidationError(f"{option}[{i}].mark", uplinks[i].get("mark"), allowed)
    _check_unique(option, "mark", uplinks, picked, hex)
    return {str(uplinks[p[0]]["name"]): p[1] for p in picked}


def assign_tables(
    uplinks: Sequence[Mapping[str, object]], option: str = "multihome_uplinks"
) -> Dict[str, int]:
    """Uplink name -> routing table id; explicit ``table`` values allowed (1-252, 256+)."""
    picked = _pick(option, uplinks, "table", derive_table_id)
    allowed = "a table id from 1 to 4294967295 other than 253, 254 and 255 (reserved)"
    for i, value, explicit in picked:
        if explicit and (value < 1 or value > 0xFFFFFFFF or value in (253, 254, 255)):
            raise ValidationError(f"{option}[{i}].table", uplinks[i].get("table"), allowed)
    _check_unique(option, "table", uplinks, picked, str)
    return {str(uplinks[p[0]]["name"]): p[1] for p in picked}


def table_name(uplink: str, prefix: Optional[str] = "mh_") -> str:
    """The rt_tables name of an uplink's routing table."""
    return f"{prefix or ''}{uplink}"
