"""Filters of netops.multihome for HA pairs: validate a pair, fold it into the router model."""
from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.netops.multihome.plugins.module_utils.engine.errors import ValidationError
from ansible_collections.netops.multihome.plugins.module_utils.engine.model.ha_pair import (
    pair_settings,
    with_ha,
)


def ha_pair(model, ha, host, peer_model=None, peer_ha=None):
    try:
        return pair_settings(model, ha, host, peer_model or None, peer_ha or None)
    except ValidationError as exc:
        raise AnsibleFilterError(str(exc)) from None


def ha_model(model, settings):
    return with_ha(model, settings)


class FilterModule:
    def filters(self):
        return {"ha_pair": ha_pair, "ha_model": ha_model}
