"""Commit-confirm: a change that is not confirmed in time undoes itself.

``multihome apply --confirm SECONDS`` (and the role's ``multihome arm``) first arms a
detached timer, then applies. Unless ``multihome confirm`` runs within SECONDS (the role
runs it over a fresh SSH connection, proving it can still reach the router), the timer
re-applies the last confirmed model (``model.confirmed.json``: routing tables, policy
rules, the balancing ruleset, kernel settings), removes the tables only the new model
had, and puts that model back as ``model.json``. A change that cuts the management path
thus undoes itself, also across a reboot (the first apply or boot of the next boot
reverts a change still pending, whose timer died with the old boot). Any apply made
without a pending confirmation is confirmed at once.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Callable, List

from engine.errors import EngineError
from engine.failover.state import StateLock, boot_id, load_model, log_event, write_atomic
from engine.paths import Paths
from engine.runner import Runner

ApplyModel = Callable[[dict, Paths, Runner, bool], dict]


def confirmed_path(paths: Paths) -> str:
    return paths.model[: -len(".json")] + ".confirmed.json"


def pending_path(paths: Paths) -> str:
    """Kept across a reboot (not in /run): ``multihome boot`` reverts a change still pending."""
    return os.path.join(os.path.dirname(paths.state_dir), "confirm.pending")


def _lock(paths: Paths) -> StateLock:
    """Serialises confirm and revert, so a confirmation never races a revert half-done."""
    return StateLock(paths, os.path.join(os.path.dirname(paths.state_dir), "confirm.lock"))


def pending(paths: Paths) -> str:
    try:
        with open(pending_path(paths), encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def save_confirmed(paths: Paths) -> None:
    with open(paths.model, encoding="utf-8") as fh:
        write_atomic(confirmed_path(paths), fh.read(), 0o600)


def arm(paths: Paths, seconds: float, cli: List[str]) -> str:
    """Start the revert timer; its token. Raises when there is nothing to go back to."""
    if not os.path.isfile(confirmed_path(paths)):
        raise EngineError(f"no confirmed model to go back to ({confirmed_path(paths)}): "
                          "apply once without a confirm timeout")
    token = f"{boot_id()}.{time.time():.6f}.{os.getpid()}"
    with _lock(paths):
        write_atomic(pending_path(paths), token + "\n", 0o600)
    subprocess.Popen([*cli, "revert", "--after", str(seconds), "--token", token],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True, close_fds=True)
    return token


def confirm(paths: Paths) -> bool:
    """Keep the change: disarm the timer and make the model in force the confirmed one.
    Whether a confirmation was pending."""
    with _lock(paths):
        was = bool(pending(paths))
        if was:
            os.unlink(pending_path(paths))
        save_confirmed(paths)
    if was:
        log_event(paths, "confirm: change confirmed", "multihome")
    return was


def revert_if_stale(paths: Paths, runner: Runner, apply_model: ApplyModel) -> bool:
    """Revert now a change left pending by an earlier boot (its timer is gone)."""
    token = pending(paths)
    if token and not token.startswith(boot_id() + "."):
        return revert_after(paths, runner, 0, token, apply_model)
    return False


def revert_after(paths: Paths, runner: Runner, seconds: float, token: str, apply_model: ApplyModel) -> bool:
    """Sleep, then revert unless this timer's change was confirmed; whether it reverted."""
    from engine.routing.table import apply_table

    time.sleep(seconds)
    with _lock(paths):
        if pending(paths) != token:
            return False
        current = load_model(paths)
        with open(confirmed_path(paths), encoding="utf-8") as fh:
            text = fh.read()
        write_atomic(paths.model, text, 0o600)
        previous = load_model(paths)
        apply_model(previous, paths, runner, False)
        kept = {p["name"] for p in previous.get("routing") or []}
        for params in current.get("routing") or []:
            if params["name"] not in kept:
                apply_table({**params, "state": "absent"}, runner)
        os.unlink(pending_path(paths))
    log_event(paths, f"confirm: not confirmed within {seconds:g}s: reverted to the last confirmed model",
              "multihome")
    return True


def cli_argv() -> List[str]:
    """How the timer runs this CLI again (the installed wrapper)."""
    return [sys.executable, os.path.realpath(sys.argv[0])]
