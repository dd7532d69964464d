"""How ``apply`` loads the steps: test first unless one atomic transaction, and a refusal
after earlier commits puts every step back (the kernel round trip is in tests/kernel)."""

from __future__ import annotations

# isort: off
# puts the collection on sys.path
import test_policy_params  # noqa: F401  # pylint: disable=unused-import
import pytest
from ansible_collections.netops.multihome.plugins.module_utils.engine.errors import EngineError
from ansible_collections.netops.multihome.plugins.module_utils.engine.ruleset import apply
from ansible_collections.netops.multihome.plugins.module_utils.engine.ruleset.backend import Step
# isort: on


class Recorder:
    def __init__(self, label: str, atomic: bool, log: list, refuse: bool = False) -> None:
        self.label, self.atomic, self.log, self.refuse = label, atomic, log, refuse
        self.command = label

    def load(self, script: str, test: bool) -> None:
        self.log.append((self.label, "test" if test else "load"))
        if self.refuse and not test:
            raise EngineError(f"{self.label} refused")

    def rollback(self, before: str) -> None:
        self.log.append((self.label, "rollback:" + before))


def step(backend: Recorder) -> Step:
    return Step(backend, "old-" + backend.label, "new", "script", [])


def test_one_atomic_transaction_is_loaded_without_a_test() -> None:
    log: list = []
    apply._load([step(Recorder("nft", True, log))])
    assert log == [("nft", "load")]


def test_several_steps_are_all_tested_before_any_is_loaded() -> None:
    log: list = []
    apply._load([step(Recorder("v4", False, log)), step(Recorder("v6", False, log))])
    assert log == [("v4", "test"), ("v6", "test"), ("v4", "load"), ("v6", "load")]


def test_a_refusal_after_a_commit_rolls_every_step_back_and_says_so() -> None:
    log: list = []
    steps = [step(Recorder("v4", False, log)), step(Recorder("v6", False, log, refuse=True))]
    with pytest.raises(EngineError, match="v6 refused; partially applied, rolled back") as err:
        apply._load(steps)
    assert "nothing changed" not in str(err.value)
    assert log[-2:] == [("v6", "rollback:old-v6"), ("v4", "rollback:old-v4")]


def test_a_refused_single_transaction_changed_nothing() -> None:
    with pytest.raises(EngineError, match="nft refused; nothing changed"):
        apply._load([step(Recorder("nft", True, [], refuse=True))])
