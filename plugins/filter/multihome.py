"""Filters of netops.multihome: the role's variables -> the validated router model."""
from __future__ import annotations

import json

from ansible.errors import AnsibleFilterError
from ansible_collections.netops.multihome.plugins.module_utils.engine.errors import ValidationError
from ansible_collections.netops.multihome.plugins.module_utils.engine.rolemodel import (
    build_model,
    lsm_connections,
)

DOCUMENTATION_router_model = """
name: router_model
short_description: Validate the multihome role's variables and derive the router model
description:
  - Takes a dict of the role's C(multihome_*) variables and returns the model the role
    writes to C(/etc/netops-multihome/model.json) (conntrack_balance params, one
    policy_route_table params dict per uplink, kernel settings, failover settings).
  - Marks and table ids are derived from uplink names, so reordering uplinks changes nothing.
  - Fails naming the variable, the value and what is allowed.
"""


def router_model(role_vars):
    if not isinstance(role_vars, dict):
        raise AnsibleFilterError(f"router_model expects a dict of multihome_* variables, got {role_vars!r}")
    try:
        return build_model(role_vars)
    except ValidationError as exc:
        raise AnsibleFilterError(str(exc)) from None


def lsm_config(model, hook):
    """{"connections": [...], "groups": [...]} for the LSM config template."""
    conns, groups = lsm_connections(model, hook)
    return {"connections": conns, "groups": groups}


def with_states(uplinks, status_json):
    """Balance uplinks with ``state`` set from ``multihome status --json`` output, so a
    re-run keeps an uplink the failover hook marked down out of rotation."""
    states = {}
    if status_json:
        try:
            states = {u["name"]: u["state"] for u in json.loads(status_json)["uplinks"]}
        except (ValueError, KeyError, TypeError) as exc:
            raise AnsibleFilterError(f"with_states: cannot read multihome status output: {exc}") from None
    return [dict(u, state=states.get(u["name"], "up")) for u in uplinks]


class FilterModule:
    def filters(self):
        return {"router_model": router_model, "lsm_config": lsm_config, "with_states": with_states}
