"""The interface both ruleset backends implement, and one step of an apply.

A backend reads its part of the kernel's ruleset, renders a :class:`~.plan.RulesetPlan`
in its own syntax, compares the two into one transaction script (a :class:`Step`) and
loads that script, either only test-loaded (``test=True``, nothing changes) or for real.
``apply.apply_policy`` drives them; another backend is one more class like these.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Protocol

from .plan import RulesetPlan


class Backend(Protocol):
    label: str  # names the step in the before/after texts and in ``changes``
    command: str  # how the step's script is shown in ``commands``
    atomic: bool  # whether one script is one transaction (all of it or nothing)

    def may_hold_ours(self) -> bool:
        """Whether reading is worth it when this is not the wanted backend (leftovers)."""

    def step(self, ruleset: Optional[RulesetPlan]) -> Step:
        """Read, render ``ruleset`` (None: remove ours) and compare."""

    def load(self, script: str, test: bool) -> None:
        """Load one transaction; ``test``: only check it, nothing changes."""

    def rollback(self, before: str) -> None:
        """Put our rules back as ``before`` (a step's ``before`` text) says."""


class Step(NamedTuple):
    backend: Backend
    before: str  # our rules as the kernel has them, in the backend's syntax
    after: str  # our rules as wanted
    script: Optional[str]  # the transaction turning before into after; None: nothing to do
    changes: list  # one line per changed chain, for people
