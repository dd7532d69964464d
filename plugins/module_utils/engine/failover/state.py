"""Uplink state bookkeeping and the reaction to a monitor event.

Each uplink has one state file per source of truth (``<uplink>.probe`` written for
LSM's verdict, ``<uplink>.carrier`` for the kernel's link state) and one effective
state file (``<uplink>``: ``up``/``down``, the time it took that state, the sources).
An uplink with several targets also has one record per target and source
(``<uplink>.probe.<n>``, ``<uplink>.degraded.<n>``): the source's record follows from
them by quorum (failover/probes.py).
Events are ordered by the boot clock (when the hook process started, or when the monitor
saw a carrier change) within one boot, never by the wall clock, which can step back.
An uplink is down when any source says down. Every event takes one lock, so concurrent
events are applied one after the other and each sees the states the previous one wrote;
files are replaced atomically, so a reader never sees half a file.

On an event the balancing ruleset is re-applied for the live uplinks (the ruleset
engine changes only what differs, in one transaction) and, when an uplink went down
while another is still live, the conntrack entries carrying its mark, and only those,
are deleted so its clients reconnect through a live uplink at once.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..errors import EngineError, ValidationError
from ..paths import Paths
from ..runner import Runner

# "admin": an operator's drain (router/drain.py); "degraded": LSM's stricter connections
# (``degraded_when``). Both are soft: down for new flows, the uplink's flows kept.
SOURCES = ("probe", "carrier", "admin", "degraded")
SOFT_SOURCES = ("admin", "degraded")
STATES = ("up", "down")


@dataclass
class SourceState:
    state: str
    at: float
    seq: Optional[float] = None  # boot clock of the event, within boot ``boot``
    boot: str = ""


@dataclass
class EventResult:
    uplink: str
    source: str
    state: str
    effective: Dict[str, str]
    previous: str
    changed_rules: bool = False
    deleted_flows: int = 0
    ignored: str = ""
    seconds: float = 0.0
    commands: List[str] = field(default_factory=list)
    detail: str = ""  # a per-target verdict: " target=<n>:<state> targets_down=<k>/<n> down_at=<K>"

    def line(self) -> str:
        """The one log line for this event."""
        if self.ignored:
            return f"uplink={self.uplink} source={self.source} state={self.state} ignored ({self.ignored})"
        live = ",".join(n for n, s in sorted(self.effective.items()) if s == "up") or "none"
        return (
            f"uplink={self.uplink} source={self.source} state={self.state} "
            f"effective={self.previous}->{self.effective[self.uplink]} live={live} "
            f"rules={'changed' if self.changed_rules else 'unchanged'} "
            f"flows_deleted={self.deleted_flows} ms={self.seconds * 1000:.1f}{self.detail}"
        )


# path -> (file identity, model): the file is parsed again only when it was replaced.
_loaded: Dict[str, Tuple[Tuple[int, ...], dict]] = {}


def load_model(paths: Paths) -> dict:
    """The saved model; the same object while the file is unchanged (inode, mtime, size),
    so a long-running monitor parses it once, not on every event."""
    try:
        st = os.stat(paths.model)
        key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        hit = _loaded.get(paths.model)
        if hit is not None and hit[0] == key:
            return hit[1]
        with open(paths.model, encoding="utf-8") as fh:
            model = json.load(fh)
    except (OSError, ValueError) as exc:
        raise EngineError(f"cannot read the router model {paths.model}: {exc}") from exc
    if not isinstance(model, dict) or "balance" not in model or "failover" not in model:
        raise EngineError(f"{paths.model} is not a netops.multihome model")
    _loaded[paths.model] = (key, model)
    return model


def uplink_names(model: dict) -> List[str]:
    return [u["name"] for u in model["balance"]["uplinks"]]


def write_atomic(path: str, text: str, mode: int = 0o644) -> None:
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _read_state(path: str) -> Optional[Tuple[str, float, str]]:
    try:
        with open(path, encoding="utf-8") as fh:
            fields = fh.read().split()
    except OSError:
        return None
    if len(fields) < 2 or fields[0] not in STATES:
        return None
    try:
        return fields[0], float(fields[1]), " ".join(fields[2:])
    except ValueError:
        return None


def source_states(paths: Paths, uplink: str) -> Dict[str, SourceState]:
    out = {}
    for source in SOURCES:
        got = _source_state(paths, f"{uplink}.{source}")
        if got:
            out[source] = got
    return out


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _is_older(known: SourceState, seq: float, at: float, boot: str) -> bool:
    """Whether an event of this boot at ``seq`` came before the recorded one. A record of
    another boot (or without an order) is always older than a new event. Hook processes
    started within one clock tick (10 ms) have the same ``seq``: their own time decides."""
    return (known.seq is not None and bool(boot) and known.boot == boot
            and (seq, at) < (known.seq, known.at))


def effective_state(sources: Dict[str, SourceState]) -> str:
    """Down when any source says down; an uplink nothing has reported on is up."""
    return "down" if any(s.state == "down" for s in sources.values()) else "up"


def _hard_down(states: Dict[str, str]) -> bool:
    """Whether a source that kills the uplink's flows (not a drain, not degraded) says down."""
    return any(state == "down" for source, state in states.items() if source not in SOFT_SOURCES)


def uplink_state(paths: Paths, uplink: str) -> Tuple[str, Optional[float], str]:
    """(effective state, since when, detail) as last written."""
    got = _read_state(os.path.join(paths.state_dir, uplink))
    if got is None:
        return "up", None, "no event yet"
    return got


def all_states(paths: Paths, names: List[str]) -> Dict[str, str]:
    return {n: effective_state(source_states(paths, n)) for n in names}


class StateLock:
    """Exclusive lock serialising every writer of the state directory (or, given a
    ``path``, whatever else that lock file guards)."""

    def __init__(self, paths: Paths, path: str = "") -> None:
        self.path = path or paths.lock
        self.fd = -1

    def __enter__(self) -> StateLock:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def _record(paths: Paths, record: str, state: str, at: float, seq: float, boot: str) -> None:
    write_atomic(os.path.join(paths.state_dir, record), f"{state} {at:.3f} seq={seq:.6f} boot={boot}\n")


def _source_state(paths: Paths, record: str) -> Optional[SourceState]:
    got = _read_state(os.path.join(paths.state_dir, record))
    if got is None:
        return None
    extra = dict(f.split("=", 1) for f in got[2].split() if "=" in f)
    try:
        seq: Optional[float] = float(extra["seq"])
    except (KeyError, ValueError):
        seq = None
    return SourceState(got[0], got[1], seq, extra.get("boot", ""))


def _record_effective(
    paths: Paths, uplink: str, state: str, since: float, sources: Dict[str, SourceState]
) -> None:
    detail = " ".join(f"{k}={v.state}" for k, v in sorted(sources.items()))
    write_atomic(os.path.join(paths.state_dir, uplink), f"{state} {since:.3f} {detail}\n")


ApplyFn = Callable[[dict, Runner, Dict[str, str]], dict]
DeleteFn = Callable[[int, int, Runner], int]


def _default_apply(params: dict, runner: Runner, states: Dict[str, str]) -> dict:
    from ..ruleset.apply import apply_policy, policy_of

    return apply_policy(policy_of(params), runner, states=states, other_backend=False)


def _default_delete(mark: int, mask: int, runner: Runner) -> int:
    from ..ruleset.conntrack import delete_by_mark

    return delete_by_mark(mark, mask, runner)


OwnFn = Callable[[dict, Dict[str, str], Runner], dict]


def _default_own(model: dict, states: Dict[str, str], runner: Runner) -> dict:
    from ..routing.own_traffic import apply_own_default

    return apply_own_default(model, states, runner)


def handle_event(
    model: dict,
    uplink: str,
    source: str,
    state: str,
    at: float,
    paths: Paths,
    runner: Runner,
    apply_fn: ApplyFn = _default_apply,
    delete_fn: DeleteFn = _default_delete,
    own_fn: OwnFn = _default_own,
    seq: Optional[float] = None,
    target: Optional[int] = None,
) -> EventResult:
    """Record one monitor verdict and bring the balancing in line with every state.
    ``at``: wall-clock time (shown as 'since'); ``seq``: the event's boot-clock time,
    which orders events (default: now); ``target``: the verdict is about that target of
    the uplink (1-based), the source's state follows by quorum (failover/probes.py)."""
    from ..hook.protocol import boot_clock

    started = time.monotonic()
    seq = boot_clock() if seq is None else seq
    boot = boot_id()
    names = uplink_names(model)
    if uplink not in names:
        raise ValidationError("uplink", uplink, "one of " + ", ".join(names))
    if source not in SOURCES:
        raise ValidationError("source", source, "one of " + ", ".join(SOURCES))
    if state not in STATES:
        raise ValidationError("state", state, "up or down")
    count = len(model["failover"]["uplinks"][uplink]["targets"])
    if target is not None and not 1 <= target <= count:
        raise ValidationError("target", target, f"1 to {count} (the targets of {uplink})")
    with StateLock(paths):
        sources = source_states(paths, uplink)
        record = f"{uplink}.{source}" if target is None else f"{uplink}.{source}.{target}"
        known = _source_state(paths, record)
        if known is not None and _is_older(known, seq, at, boot):
            return EventResult(uplink, source, state, all_states(paths, names), effective_state(sources),
                               ignored=f"older than the {known.state} recorded at boot clock {known.seq:.3f}")
        _record(paths, record, state, at, seq, boot)
        detail = ""
        if target is not None:
            reported = state
            state, detail = _quorum(paths, model, uplink, source, count)
            detail = f" target={target}:{reported} {detail}"
            _record(paths, f"{uplink}.{source}", state, at, seq, boot)
        sources[source] = SourceState(state, at, seq, boot)
        now_state = effective_state(sources)
        effective = all_states(paths, names)
        effective[uplink] = now_state
        last = _read_state(os.path.join(paths.state_dir, uplink))
        # The effective record is written only once the kernel matches it: after a failed
        # apply it still holds the state the kernel was last brought to, so the next event
        # (or this one's retries) redoes the ruleset and the conntrack delete.
        previous = last[0] if last is not None else "up"
        result = EventResult(uplink, source, state, effective, previous, detail=detail)
        # An event that leaves the uplink's state as recorded needs no ruleset work
        # (``multihome apply`` repairs drift); anything else re-applies the balancing.
        if last is None or last[0] != now_state:
            applied = _retried(paths, f"uplink={uplink} apply",
                               lambda: apply_fn(model["balance"], runner, effective))
            result.changed_rules = bool(applied.get("changed"))
            result.commands = list(applied.get("commands") or [])
            # The router's own traffic moves with the LAN's (routing/own_traffic.py).
            result.commands += own_fn(model, effective, runner).get("commands") or []
        # Flows go only when a hard source (probe, carrier) takes the uplink down; a drain
        # or a degraded uplink keeps them (and a later hard down still deletes them).
        was_hard_down = last is not None and _hard_down(dict(
            part.split("=", 1) for part in last[2].split() if "=" in part))
        others_live = any(s == "up" for n, s in effective.items() if n != uplink)
        if _hard_down({k: v.state for k, v in sources.items()}) and not was_hard_down and others_live:
            info = model["failover"]["uplinks"][uplink]
            result.deleted_flows = _retried(paths, f"uplink={uplink} conntrack delete", lambda: delete_fn(
                int(info["mark"]), int(info["mask"]), runner))
        since = at if last is None or last[0] != now_state else last[1]
        _record_effective(paths, uplink, now_state, since, sources)
    result.seconds = time.monotonic() - started
    return result


def _quorum(paths: Paths, model: dict, uplink: str, source: str, count: int) -> Tuple[str, str]:
    """The source's state from its per-target records, and a note for the log line."""
    from .probes import down_targets, quorum

    recorded = [_source_state(paths, f"{uplink}.{source}.{n}") for n in range(1, count + 1)]
    states = [r.state if r else None for r in recorded]
    needed = down_targets(model, uplink)
    down = sum(1 for s in states if s == "down")
    return quorum(states, needed), f"targets_down={down}/{count} down_at={needed}"


ATTEMPTS = 3
RETRY_S = 0.2


def _retried(paths: Paths, what: str, fn: Callable[[], Any]) -> Any:
    """FN, tried up to ATTEMPTS times; each failure logged; the last one raised."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return fn()
        except EngineError as exc:
            with contextlib.suppress(OSError):
                log_event(paths, f"{what} failed (attempt {attempt}/{ATTEMPTS}): {exc}", "multihome")
            if attempt == ATTEMPTS:
                raise
            time.sleep(RETRY_S * attempt)
    raise AssertionError("unreachable")


def clear_records(paths: Paths, keep: List[str]) -> List[str]:
    """Delete the state files of every uplink not in ``keep`` (a removed uplink's, or all
    of them when failover is off); the names of the files deleted. Call under the lock."""
    try:
        files = os.listdir(paths.state_dir)
    except FileNotFoundError:
        return []
    gone = []
    for name in sorted(files):
        # <uplink>, <uplink>.<source>, <uplink>.<source>.<target>: uplink names have no dot
        uplink = name.split(".", 1)[0]
        if not name.startswith(".") and uplink not in keep:
            os.unlink(os.path.join(paths.state_dir, name))
            gone.append(name)
    return gone


def forget_targets(paths: Paths, uplink: str) -> None:
    """Delete the uplink's per-target records: a new LSM process reports each target's
    first verdict again, and a stale record must not count toward the quorum meanwhile."""
    with StateLock(paths), contextlib.suppress(FileNotFoundError):
        for name in os.listdir(paths.state_dir):
            if name.startswith(uplink + ".") and name.count(".") == 2:
                os.unlink(os.path.join(paths.state_dir, name))


def apply_recorded(params: dict, runner: Runner, check: bool = False, paths: Optional[Paths] = None,
                   apply_fn: ApplyFn = _default_apply, use_records: bool = True) -> dict:
    """Apply the balancing ``params`` with each uplink's recorded state, read and applied
    under the lock the hook holds, so an event recorded meanwhile is never overwritten
    by a state read earlier (an uplink is down when its params or its record say so).
    Records of uplinks no longer in ``params`` are deleted, and every record when
    ``use_records`` is false (failover off). Check mode takes no lock and changes nothing."""
    paths = paths or Paths.default()
    uplinks = params.get("uplinks") or []
    names = [u["name"] for u in uplinks]

    def run() -> dict:
        if not check:
            clear_records(paths, names if use_records else [])
        recorded = all_states(paths, names) if use_records else {n: "up" for n in names}
        states = {u["name"]: "down" if "down" in (u.get("state"), recorded[u["name"]]) else "up"
                  for u in uplinks}
        if check:
            from ..ruleset.apply import apply_policy

            return apply_policy(params, runner, check=True, states=states)
        return apply_fn(params, runner, states)

    if check:
        return run()
    with StateLock(paths):
        return run()


def log_event(paths: Paths, line: str, ident: str = "multihome") -> None:
    """One line to syslog (journal) and to the router's event log."""
    import syslog

    syslog.openlog(ident, syslog.LOG_PID, syslog.LOG_DAEMON)
    syslog.syslog(syslog.LOG_NOTICE, line)
    os.makedirs(os.path.dirname(paths.events), exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime())
    fd = os.open(paths.events, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, f"{stamp} {time.time():.3f} {line}\n".encode())
    finally:
        os.close(fd)
