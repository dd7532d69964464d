"""LSM's own report of a connection, read from the syslog lines it writes.

On SIGUSR1 (and at each state change) LSM 1.0.4 and foolsm 1.0.21 syslog, per connection,
one summary line over their window of the last 100 probes, then six rows of per-probe
flags (``seq``, ``used``, ``wait``, ``replied``, ``timeout``, ``error``)::

    name = isp1.1, replied = 97, waiting = 1, timeout = 3, timeout max = 0, late reply = 0,
    cons rcvd = 40, cons wait = 0, cons miss = 0, cons miss max = 0, [min_rtt = 0.301,]
    avg_rtt = 0.412, [max_rtt = 0.733,] seq = 1234, status = up

(``min_rtt``/``max_rtt``: foolsm only; releases before 1.0.4 lack ``timeout max``,
``cons miss max`` and ``status``.)

Fields are read by name, so a field added by a later release changes nothing here.
``avg_rtt`` is the mean RTT in milliseconds of the window's answered probes (0 when none
answered); ``timeout`` counts probes not answered within ``timeout_ms``, late replies
included (LSM's own "recently lost" count); ``waiting`` counts probes without a reply yet,
lost ones included. A state change is also logged as ``link NAME up event`` (``down``).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Optional, Tuple, Union

_SYSLOG = re.compile(r"^<\d{1,3}>(?:\w{3} [ \d]\d \d\d:\d\d:\d\d )?[\w.-]+(?:\[\d+\])?: ?(.*)$", re.S)
_FIELD = re.compile(r"([a-z_][a-z_ ]*?) = ([^,]*)")
_CHANGE = re.compile(r"^link (\S+) (up|down|long down) event$")
# The per-probe flag rows that follow a summary line: part of the dump, nothing to read.
DUMP_ROWS = ("seq ", "used ", "wait ", "replied ", "timeout ", "error ")


@dataclass(frozen=True)
class Summary:
    """One connection's counters over LSM's window, as it reported them."""

    connection: str
    replied: int
    timeout: int
    late: int
    rtt_ms: Optional[float]  # None when no probe of the window was answered
    status: Optional[str]  # LSM 1.0.4 and later: up, down, unknown, long_down

    @property
    def settled(self) -> int:
        """Probes of the window answered in time, answered late or given up on."""
        return self.replied + self.timeout - self.late

    @property
    def loss_pct(self) -> Optional[float]:
        """Share of the settled probes LSM counts as lost (late replies included)."""
        return round(100.0 * self.timeout / self.settled, 2) if self.settled > 0 else None


@dataclass(frozen=True)
class Change:
    """``link NAME up event``: LSM decided a connection's new state."""

    connection: str
    state: str


def message(datagram: bytes) -> Optional[str]:
    """The text of one syslog datagram (RFC 3164 as glibc writes it), without the header."""
    found = _SYSLOG.match(datagram.decode("utf-8", "replace").rstrip("\n\0"))
    return found.group(1).rstrip() if found else None


def is_dump(text: str) -> bool:
    """A line of a status dump (the summary or a flag row) rather than an event or error."""
    return text.startswith("name = ") or text.startswith(DUMP_ROWS)


def parse(text: str) -> Union[Summary, Change, None]:
    change = _CHANGE.match(text)
    if change:
        return Change(change.group(1), change.group(2).replace(" ", "_"))
    if not text.startswith("name = "):
        return None
    fields = {key: value.strip() for key, value in _FIELD.findall(text)}
    try:
        replied, timeout = int(fields["replied"]), int(fields["timeout"])
        late = int(fields.get("late reply", "0"))
        rtt = float(fields["avg_rtt"])
    except (KeyError, ValueError):
        return None
    if min(replied, timeout, late) < 0 or late > min(replied, timeout) or not math.isfinite(rtt) or rtt < 0:
        return None
    return Summary(fields["name"], replied, timeout, late, rtt if replied else None, fields.get("status"))


def split(datagram: bytes) -> Tuple[Optional[str], Union[Summary, Change, None]]:
    """(message text, what it reports) of one datagram."""
    text = message(datagram)
    return text, (parse(text) if text is not None else None)
