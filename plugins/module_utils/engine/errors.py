"""Exceptions shared by every part of the engine."""
from __future__ import annotations


class EngineError(Exception):
    """A failure while reading or changing kernel state (message is for people)."""


class ValidationError(EngineError):
    """Bad input: names the option, the offending value and what is allowed."""

    def __init__(self, option: str, value: object, allowed: str) -> None:
        self.option = option
        self.value = value
        self.allowed = allowed
        super().__init__(f"{option}: invalid value {value!r}: {allowed}")
