"""Cross-field mistakes in one router's variables stop site.yml before any router of the fleet
changes (the lab's two_routers topology, neither router converged before).

Each mistake passes the role's argument_specs (types and choices are right) and only the
engine's cross-field checks catch it; it is made in r2's host_vars only, so r1's valid
variables would converge if validation did not stop the whole play.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

LAB_TOPOLOGY = "two_routers"

def lan_on_an_uplink_interface(v: dict) -> None:
    v["multihome_lans"][0]["interface"] = "wan2"


def gateway_outside_the_uplink_prefix(v: dict) -> None:
    v["multihome_uplinks"][0]["gateway"] = "198.51.100.1"  # r2's wan1 is 198.51.100.16/30


def two_uplinks_with_one_name(v: dict) -> None:
    v["multihome_uplinks"][1]["name"] = "isp1"


def default_uplink_that_does_not_exist(v: dict) -> None:
    v["multihome_local_default_uplink"] = "isp9"


def lan_prefix_typed_over_an_uplink_prefix(v: dict) -> None:
    v["multihome_lans"][0]["prefixes"][0] = "198.51.100.0/24"  # beside wan1's 198.51.100.16/30


def two_lans_with_one_prefix(v: dict) -> None:
    v["multihome_lans"][1]["prefixes"][0] = "192.168.11.0/24"


def monitor_target_inside_a_lan(v: dict) -> None:
    v["multihome_uplinks"][1]["targets"] = ["192.168.12.7"]


# each mistake, with the variable and the value its error must name
MISTAKES = {
    lan_on_an_uplink_interface: ("multihome_lans[0].interface", "wan2"),
    gateway_outside_the_uplink_prefix: ("multihome_uplinks[0].gateway", "198.51.100.1"),
    two_uplinks_with_one_name: ("multihome_uplinks[1].name", "isp1"),
    default_uplink_that_does_not_exist: ("multihome_local_default_uplink", "isp9"),
    lan_prefix_typed_over_an_uplink_prefix: ("multihome_lans[0].prefixes[0]", "multihome_uplinks[0].address"),
    two_lans_with_one_prefix: ("multihome_lans[1].prefixes[0]", "multihome_lans[0].prefixes[0]"),
    monitor_target_inside_a_lan: ("multihome_uplinks[1].targets[0]", "192.168.12.7"),
}


@pytest.mark.parametrize("mistake", MISTAKES, ids=lambda f: f.__name__)
def test_cross_field_mistake_on_r2_stops_the_play_before_either_router_changes(lab, tmp_path: Path,
                                                                                mistake) -> None:
    variable, value = MISTAKES[mistake]
    inventory = tmp_path / "inventory"
    shutil.copytree(lab.inventory, inventory)
    r2_vars = inventory / "host_vars" / "r2.yml"
    host_vars = yaml.safe_load(r2_vars.read_text())
    mistake(host_vars)
    r2_vars.write_text(yaml.safe_dump(host_vars))
    before = {router: lab.snapshot(router) for router in ("r1", "r2")}
    bad = lab.playbook(inventory=inventory)
    assert bad.returncode != 0
    assert variable in bad.stdout and value in bad.stdout, bad.stdout[-3000:]
    assert {router: lab.snapshot(router) for router in ("r1", "r2")} == before
