"""The fast path's digest: every role option is one of its inputs, and it changes with each."""
from __future__ import annotations

import os

import yaml
from ansible_collections.netops.multihome.plugins.filter.converge import converge_digest

ROLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "roles", "multihome")


def load(*parts):
    with open(os.path.join(ROLE, *parts)) as fh:
        return yaml.safe_load(fh)


def test_every_role_option_is_an_input_of_the_digest() -> None:
    options = load("meta", "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert sorted(load("vars", "main.yml")["multihome_digest_vars"]) == sorted(options), (
        "add each new role option to multihome_digest_vars in roles/multihome/vars/main.yml")


def test_the_digest_ignores_key_order_and_follows_every_value() -> None:
    base = {"vars": {"multihome_uplinks": [{"name": "isp1", "weight": 1}], "multihome_failover": True}}
    same = {"vars": {"multihome_failover": True, "multihome_uplinks": [{"weight": 1, "name": "isp1"}]}}
    assert converge_digest(base) == converge_digest(same)
    assert converge_digest(base) != converge_digest({"vars": {**base["vars"], "multihome_failover": False}})
    assert converge_digest(base) != converge_digest(
        {"vars": {**base["vars"], "multihome_uplinks": [{"name": "isp1", "weight": 2}]}})


def test_the_collection_digest_follows_a_template_change(tmp_path) -> None:
    from ansible_collections.netops.multihome.plugins.filter import converge

    template = tmp_path / "roles" / "multihome" / "templates" / "lsm.conf.j2"
    template.parent.mkdir(parents=True)
    template.write_text("defaults {}\n")
    before = converge.collection_digest(str(tmp_path))
    template.write_text("defaults { debug 1 }\n")
    converge._collection_digests.clear()
    assert converge.collection_digest(str(tmp_path)) != before
