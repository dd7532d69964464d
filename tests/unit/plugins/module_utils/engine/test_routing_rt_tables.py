"""rt_tables.d handling: reading every mapping file, conflicts, our own file."""
from __future__ import annotations

import pytest
from ansible_collections.netops.multihome.plugins.module_utils.engine.errors import ValidationError
from ansible_collections.netops.multihome.plugins.module_utils.engine.routing import rt_tables


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_parse_skips_comments_and_reads_hex():
    maps = rt_tables.parse_file("f", "# c\n255\tlocal\n0x65 isp1 # trailing\n#1 inr.ruhep\nbad line\n")
    assert [(m.table_id, m.name) for m in maps] == [(255, "local"), (101, "isp1")]


def test_conflicts_name_the_file(tmp_path):
    write(tmp_path / "rt_tables", "254 main\n")
    write(tmp_path / "rt_tables.d" / "vpn.conf", "101 vpn\n")
    write(tmp_path / "rt_tables.d" / "other.conf", "102 isp2\n")
    maps = rt_tables.read_mappings([str(tmp_path)])
    own = rt_tables.own_path("isp1", str(tmp_path))
    with pytest.raises(ValidationError, match=r"vpn\.conf") as err:
        rt_tables.check_conflicts("isp1", 101, maps, own)
    assert err.value.option == "id"
    with pytest.raises(ValidationError, match=r"other\.conf") as err:
        rt_tables.check_conflicts("isp2", 103, maps, rt_tables.own_path("isp2", str(tmp_path)))
    assert err.value.option == "name"
    assert rt_tables.check_conflicts("isp1", 110, maps, own) is None


def test_own_file_roundtrip_and_renumbering_refused(tmp_path):
    rt_tables.write_own("isp1", 101, str(tmp_path))
    maps = rt_tables.read_mappings([str(tmp_path)])
    own = rt_tables.own_path("isp1", str(tmp_path))
    assert rt_tables.check_conflicts("isp1", 101, maps, own) == 101
    assert rt_tables.check_conflicts("isp1", None, maps, own) == 101
    with pytest.raises(ValidationError, match="state=absent"):
        rt_tables.check_conflicts("isp1", 102, maps, own)
    rt_tables.remove_own("isp1", str(tmp_path))
    assert not (tmp_path / "rt_tables.d" / "isp1.conf").exists()


def test_same_mapping_elsewhere_is_no_conflict(tmp_path):
    write(tmp_path / "rt_tables", "101 isp1\n")
    maps = rt_tables.read_mappings([str(tmp_path)])
    assert rt_tables.check_conflicts("isp1", 101, maps, rt_tables.own_path("isp1", str(tmp_path))) is None
