#!/usr/bin/env python3
"""Write the documentation's Ansible examples as playbooks, so ansible-lint checks them.

Sources: the EXAMPLES of every module (wrapped in a play) and the ```yaml blocks of the
READMEs that are plays (a list of dicts with `hosts`). OUTDIR becomes a small lint project
of its own (the repository's .ansible-lint and .yamllint are copied beside the playbooks).
Usage: doc_examples.py OUTDIR
"""
from __future__ import annotations

import ast
import re
import shutil
import sys
import textwrap
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
READMES = ["README.md", "roles/multihome/README.md"]
FENCE = re.compile(r"^```ya?ml\n(.*?)^```", re.MULTILINE | re.DOTALL)


def module_examples(path: Path) -> str:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "EXAMPLES" for t in node.targets):
            return ast.literal_eval(node.value)
    raise SystemExit(f"{path}: no EXAMPLES")


def as_play(name: str, tasks_yaml: str) -> str:
    if not isinstance(yaml.safe_load(tasks_yaml), list):
        raise SystemExit(f"{name}: EXAMPLES is not a list of tasks")
    head = f"---\n- name: Examples of {name}\n  hosts: routers\n  gather_facts: false\n  tasks:\n"
    return head + textwrap.indent(textwrap.dedent(tasks_yaml).strip("\n") + "\n", "    ")


def main(out: Path) -> None:
    (out / "playbooks").mkdir(parents=True, exist_ok=True)
    for config in (".ansible-lint", ".yamllint"):
        shutil.copy(ROOT / config, out / config)
    out = out / "playbooks"
    for module in sorted((ROOT / "plugins" / "modules").glob("*.py")):
        (out / f"module_{module.stem}.yml").write_text(as_play(module.stem, module_examples(module)))
    for readme in READMES:
        path = ROOT / readme
        if not path.exists():
            continue
        for n, block in enumerate(FENCE.findall(path.read_text())):
            data = yaml.safe_load(block)
            if isinstance(data, list) and data and all(isinstance(p, dict) and "hosts" in p for p in data):
                slug = readme.replace("/", "_").replace(".md", "")
                (out / f"{slug}_{n}.yml").write_text(block if block.startswith("---") else "---\n" + block)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
