"""Generated lab topologies: any size the bench needs, with role variables that fit the plan."""
from __future__ import annotations

import ipaddress
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "lab"))
import generate
from addressing import build_plan
from mhlab import role_vars_dir


def test_sixteen_uplinks_eight_lans_get_unique_addresses(tmp_path: Path) -> None:
    plan = build_plan(str(generate.write(tmp_path / "big.json", 1, 16, 8, 64)))
    r1 = plan.routers["r1"]
    assert [u.router_if for u in r1.uplinks] == [f"wan{k}" for k in range(1, 17)]
    v4 = [ipaddress.ip_interface(u.address4) for u in r1.uplinks]
    v6 = [ipaddress.ip_interface(u.address6) for u in r1.uplinks]
    upstream6 = [ipaddress.ip_interface(i.upstream6) for i in plan.isps.values()]
    for addresses in (v4, v6, upstream6):
        assert len({a.network for a in addresses}) == len(addresses)
    assert len(r1.lans) == 8


def test_lan_prefixes_list_the_lans_own_prefix_last_after_disjoint_extras(tmp_path: Path) -> None:
    topo = generate.write(tmp_path / "p64.json", 1, 2, 8, 64)
    lans = json.loads((tmp_path / "p64" / "host_vars" / "r1.yml").read_text())["multihome_lans"]
    v4 = [[ipaddress.ip_network(p) for p in lan["prefixes"] if ":" not in p] for lan in lans]
    assert all(len(nets) == 64 for nets in v4)
    assert [str(nets[-1]) for nets in v4] == [f"192.168.{n}.0/24" for n in range(1, 9)]
    flat = [n for nets in v4 for n in nets]
    assert not any(a.overlaps(b) for i, a in enumerate(flat) for b in flat[i + 1:])
    assert role_vars_dir(str(topo)) == tmp_path / "p64"


def test_existing_topologies_keep_their_addresses_when_more_isps_are_allowed() -> None:
    r2 = build_plan("two_routers").routers["r2"]
    assert [u.address4 for u in r2.uplinks] == ["198.51.100.18/30", "198.51.100.22/30"]
    assert build_plan("default").isps["isp2"].upstream6 == "2001:db8:ff02::1/64"


def test_too_many_uplinks_is_refused_naming_the_option(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"--uplinks 17: allowed 1 to 16"):
        generate.write(tmp_path / "x.json", 1, 17, 2, 1)


def test_missing_topology_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        build_plan(str(tmp_path / "nope.json"))
