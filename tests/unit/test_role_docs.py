"""The role's documentation agrees with its argument specs, and its defaults with both.

Fails when a variable is added, removed, renamed or re-typed in meta/argument_specs.yml
without the README following (`make role-readme` regenerates its variables table).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import role_readme


def test_readme_variables_table_matches_argument_specs() -> None:
    block = role_readme.current_block(role_readme.README.read_text())
    assert block == role_readme.render(), (
        "roles/multihome/README.md is out of date with meta/argument_specs.yml: run `make role-readme`")


def test_readme_prose_names_only_variables_that_exist() -> None:
    text = role_readme.README.read_text()
    prose = text.replace(role_readme.current_block(text), "")
    known = set(role_readme.load_options())
    mentioned = set(re.findall(r"\bmultihome_[a-z0-9_]+\b", prose))
    unknown = sorted(mentioned - known)
    assert not unknown, f"README mentions variables the role does not have: {unknown}"


def test_every_top_level_option_has_a_description_and_type() -> None:
    for path, spec in role_readme.walk(role_readme.load_options()):
        assert spec.get("description"), f"{path}: no description"
        assert spec.get("type"), f"{path}: no type"


def test_defaults_file_matches_argument_spec_defaults() -> None:
    defaults = yaml.safe_load((role_readme.ROLE / "defaults" / "main.yml").read_text()) or {}
    options = role_readme.load_options()
    assert set(defaults) <= set(options), f"defaults without a spec: {sorted(set(defaults) - set(options))}"
    for name, spec in options.items():
        if "default" in spec:
            assert name in defaults, f"{name}: default in argument_specs but not in defaults/main.yml"
            assert defaults[name] == spec["default"], (
                f"{name}: defaults/main.yml has {defaults[name]!r}, argument_specs says {spec['default']!r}")


def test_render_reflects_a_changed_spec(monkeypatch) -> None:
    """The check can fail: a spec change shows up in the rendered table."""
    options = role_readme.load_options()
    changed = dict(options, multihome_backend=dict(options["multihome_backend"], default="iptables"))
    before = role_readme.render()
    monkeypatch.setattr(role_readme, "load_options", lambda entry_point="main": changed)
    assert role_readme.render() != before
