"""Commands whose text the engine parses run in the C locale, whatever the caller's is."""
from __future__ import annotations

from ansible_collections.netops.multihome.plugins.module_utils.engine.runner import Runner


def test_commands_run_in_the_c_locale(monkeypatch) -> None:
    monkeypatch.setenv("LC_ALL", "de_DE.UTF-8")
    monkeypatch.setenv("LANG", "fr_FR.UTF-8")
    out = Runner().run(["sh", "-c", 'echo "$LC_ALL $LANG"']).stdout.split()
    assert out == ["C", "C"]
