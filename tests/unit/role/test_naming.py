"""Marks and table ids derived from uplink names."""
from __future__ import annotations

import pytest
from ansible_collections.netops.multihome.plugins.module_utils.engine.errors import ValidationError
from ansible_collections.netops.multihome.plugins.module_utils.engine.model import naming


def test_reordering_changes_nothing() -> None:
    ups = [{"name": n} for n in ("isp1", "isp2", "fiber", "lte")]
    assert naming.assign_marks(ups) == naming.assign_marks(list(reversed(ups)))
    assert naming.assign_tables(ups) == naming.assign_tables(list(reversed(ups)))


def test_marks_sit_inside_the_mask_and_are_non_zero() -> None:
    for mask in (0xFF00, 0xF0, 0x00FF0000, 0x1):
        for name in ("isp1", "isp2", "a", "zz_9"):
            mark = naming.derive_mark(name, mask)
            assert mark and mark & ~mask == 0


def test_mark_collision_names_both_entries() -> None:
    # with a one-bit mask every name derives the same mark
    ups = [{"name": "isp1"}, {"name": "isp2"}]
    with pytest.raises(ValidationError) as err:
        naming.assign_marks(ups, 0x100)
    assert err.value.option == "multihome_uplinks[1].mark"
    assert "multihome_uplinks[0].mark" in err.value.allowed and "'isp1'" in err.value.allowed


def test_explicit_values_win_and_are_checked() -> None:
    ups = [{"name": "isp1", "mark": "0x300"}, {"name": "isp2", "table": 200}]
    marks = naming.assign_marks(ups)
    assert marks["isp1"] == 0x300
    assert naming.assign_tables(ups)["isp2"] == 200
    with pytest.raises(ValidationError, match=r"multihome_uplinks\[0\].mark"):
        naming.assign_marks([{"name": "isp1", "mark": 0x1}])
    with pytest.raises(ValidationError, match=r"multihome_uplinks\[0\].table"):
        naming.assign_tables([{"name": "isp1", "table": 254}])
    with pytest.raises(ValidationError, match="an integer"):
        naming.assign_marks([{"name": "isp1", "mark": True}])


def test_explicit_table_colliding_with_derived_one_is_an_error() -> None:
    derived = naming.derive_table_id("isp1")
    with pytest.raises(ValidationError, match=r"multihome_uplinks\[1\].table"):
        naming.assign_tables([{"name": "isp1"}, {"name": "isp2", "table": derived}])
