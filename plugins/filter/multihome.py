"""Filters of netops.multihome: the role's variables -> the validated router model."""
from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.netops.multihome.plugins.module_utils.engine.errors import ValidationError
from ansible_collections.netops.multihome.plugins.module_utils.engine.model.role import (
    build_model,
    lsm_connections,
)


def router_model(role_vars):
    if not isinstance(role_vars, dict):
        raise AnsibleFilterError(f"router_model expects a dict of multihome_* variables, got {role_vars!r}")
    try:
        return build_model(role_vars)
    except ValidationError as exc:
        raise AnsibleFilterError(str(exc)) from None


def lsm_config(model, hook):
    """{"connections": [...]} for the LSM config template."""
    return {"connections": lsm_connections(model, hook)}


class FilterModule:
    def filters(self):
        return {"router_model": router_model, "lsm_config": lsm_config}
