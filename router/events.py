"""The fields of one event log line (``EventResult.line()`` plus the hook's suffixes)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

_LINE = re.compile(r"\buplink=(\S+) source=(\S+) state=(\S+)(?: effective=(\w+)->(\w+) live=(\S+))?")
_MS = re.compile(r"\bms=([0-9.]+)")


@dataclass(frozen=True)
class LoggedEvent:
    uplink: str
    source: str
    state: str
    old: str  # effective states; "" when the event was ignored or failed
    new: str
    live: str
    apply_seconds: Optional[float]

    @property
    def changed(self) -> bool:
        return bool(self.old) and self.old != self.new


def parse_event_line(line: str) -> Optional[LoggedEvent]:
    found = _LINE.search(line)
    if not found:
        return None
    ms = _MS.search(line)
    uplink, source, state, old, new, live = found.groups()
    return LoggedEvent(uplink, source, state, old or "", new or "", live or "",
                       float(ms.group(1)) / 1000 if ms else None)
