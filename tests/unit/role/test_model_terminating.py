"""Each uplink's table ends in an unreachable default in both families, reached by its mark."""
from __future__ import annotations

from ansible_collections.netops.multihome.plugins.module_utils.engine.model.role import build_model
from ansible_collections.netops.multihome.plugins.module_utils.engine.model.table_spec import parse_params

from .test_model import GOOD


def test_every_table_ends_in_unreachable_defaults_for_both_families() -> None:
    for params in build_model(GOOD)["routing"]:
        spec = parse_params(params)
        last = {r.family: r for r in spec.routes if r.type == "unreachable" and r.dst == "default"}
        assert set(last) == {4, 6}
        assert all(r.metric == 2**32 - 1 for r in last.values())
        assert {r.family for r in spec.rules if r.fwmark is not None} == {4, 6}
