"""The variables section of roles/multihome/README.md, rendered from meta/argument_specs.yml.

`python scripts/role_readme.py --write` (or `make role-readme`) rewrites the section
between the markers; tests/unit/test_role_docs.py fails when the README and the specs drift.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import yaml

ROOT = Path(__file__).resolve().parents[1]
ROLE = ROOT / "roles" / "multihome"
README = ROLE / "README.md"
SPECS = ROLE / "meta" / "argument_specs.yml"
BEGIN = "<!-- BEGIN role variables: generated from meta/argument_specs.yml by `make role-readme` -->"
END = "<!-- END role variables -->"


def load_options(entry_point: str = "main") -> Dict[str, Any]:
    return yaml.safe_load(SPECS.read_text())["argument_specs"][entry_point]["options"]


def walk(options: Dict[str, Any], prefix: str = "") -> Iterator[Tuple[str, Dict[str, Any]]]:
    """Every option with its dotted path; list elements are written `name[].sub`."""
    for name, spec in options.items():
        path = prefix + name
        yield path, spec
        sub = spec.get("options") or {}
        if sub:
            joiner = "[]." if spec.get("type") == "list" else "."
            yield from walk(sub, path + joiner)


def type_text(spec: Dict[str, Any]) -> str:
    kind = spec.get("type", "str")
    return f"{kind} of {spec['elements']}" if kind == "list" and "elements" in spec else kind


def value_text(value: Any) -> str:
    if isinstance(value, str):
        return f'`"{value}"`'
    return "`" + yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip() + "`"


def cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def row(path: str, spec: Dict[str, Any]) -> str:
    description = spec.get("description", "")
    if isinstance(description, list):
        description = " ".join(description)
    default = value_text(spec["default"]) if "default" in spec else ""
    choices = ", ".join(value_text(c) for c in spec.get("choices", []))
    required = "yes" if spec.get("required") else ""
    return (f"| `{path}` | {type_text(spec)} | {required} | {default} | {choices} | "
            f"{cell(description)} |")


def render() -> str:
    lines: List[str] = [
        BEGIN,
        "| Variable | Type | Required | Default | Choices | Description |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lines += [row(path, spec) for path, spec in walk(load_options())]
    lines.append(END)
    return "\n".join(lines)


def current_block(text: str) -> str:
    if BEGIN not in text or END not in text:
        raise ValueError(f"{README} has no generated variables section ({BEGIN} ... {END})")
    start = text.index(BEGIN)
    return text[start:text.index(END, start) + len(END)]


def write() -> bool:
    text = README.read_text()
    new = text.replace(current_block(text), render())
    README.write_text(new)
    return new != text


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        print("updated" if write() else "up to date", README)
    else:
        print(render())
