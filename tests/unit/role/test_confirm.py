"""Commit-confirm bookkeeping: which model is put back, and when (the kernel side is in
tests/kernel/test_hardening.py)."""
from __future__ import annotations

import json
import os

import pytest
from engine.errors import EngineError

from router import confirm as cc


def applied_models(paths, runner, token, seconds=0):
    seen = []
    cc.revert_after(paths, runner, seconds, token, lambda m, p, r, c: seen.append(m) or {})
    return seen


def edit_model(paths, **changes) -> None:
    with open(paths.model) as fh:
        model = json.load(fh)
    model.update(changes)
    with open(paths.model, "w") as fh:
        json.dump(model, fh)


def test_arm_needs_a_confirmed_model(router) -> None:
    paths, _model = router
    with pytest.raises(EngineError, match="no confirmed model"):
        cc.arm(paths, 5, ["true"])


def test_unconfirmed_change_puts_the_confirmed_model_back(router) -> None:
    paths, _model = router
    cc.save_confirmed(paths)
    with open(paths.model) as fh:
        confirmed = fh.read()
    token = cc.arm(paths, 5, ["true"])
    edit_model(paths, routing=[])
    seen = applied_models(paths, None, token)
    assert len(seen) == 1 and seen[0]["routing"]
    with open(paths.model) as fh:
        assert fh.read() == confirmed
    assert cc.pending(paths) == ""


def test_confirmed_change_is_kept(router) -> None:
    paths, _model = router
    cc.save_confirmed(paths)
    token = cc.arm(paths, 5, ["true"])
    edit_model(paths, routing=[])
    assert cc.confirm(paths) is True
    assert applied_models(paths, None, token) == []
    with open(cc.confirmed_path(paths)) as fh:
        assert json.load(fh)["routing"] == []


def test_a_change_pending_from_an_earlier_boot_is_reverted_at_once(router) -> None:
    paths, _model = router
    cc.save_confirmed(paths)
    cc.arm(paths, 5, ["true"])
    with open(cc.pending_path(paths), "w") as fh:
        fh.write("another-boot.1.1\n")
    seen = []
    assert cc.revert_if_stale(paths, None, lambda m, p, r, c: seen.append(m) or {}) is True
    assert len(seen) == 1 and not os.path.exists(cc.pending_path(paths))
