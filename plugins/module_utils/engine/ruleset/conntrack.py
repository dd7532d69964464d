"""Removing conntrack entries of one uplink only, selected by mark under a mask."""

from __future__ import annotations

import re

from ..errors import EngineError
from ..runner import Runner

_DELETED = re.compile(r"(\d+) flow entries have been deleted")
_VANISHED = "such conntrack doesn't exist"
FAMILIES = {None: ("ipv4", "ipv6"), 4: ("ipv4",), 6: ("ipv6",), "ipv4": ("ipv4",), "ipv6": ("ipv6",)}


def delete_by_mark(mark: int, mask: int, runner: Runner, family: object | None = None) -> int:
    """Delete the entries whose ``ctmark & mask == mark``; return how many went.

    ``family`` is 4/6 (or "ipv4"/"ipv6"); None means both. Entries with other marks,
    or with this mark in bits outside ``mask``, are never touched.
    """
    if mask <= 0 or mark & ~mask:
        raise EngineError(f"conntrack delete: mark {mark:#x} is not inside mask {mask:#x}")
    if family not in FAMILIES:
        raise EngineError(f"conntrack delete: unknown family {family!r} (4, 6 or None)")
    total = 0
    for fam in FAMILIES[family]:  # type: ignore[index]
        for _attempt in range(3):
            res = runner.run(["conntrack", "-D", "-f", fam, "--mark", f"{mark:#x}/{mask:#x}"], check=False)
            found = _DELETED.search(res.stderr + res.stdout)
            if found:
                total += int(found.group(1))
                break
            # An entry listed but gone before its delete (it expired or closed meanwhile)
            # stops conntrack -D: run it again for the entries still there.
            if _VANISHED in res.stderr:
                continue
            if res.rc != 0:
                raise EngineError(f"conntrack -D -f {fam} failed: {res.stderr.strip()}")
            break
    return total
