"""Health faults at an ISP for the quorum and degraded tests: one target made unreachable
through one ISP (its echo requests dropped there), and the role variables that give an
uplink several targets and thresholds."""
from __future__ import annotations

import json
from typing import Dict, List, Optional

import yaml

from . import Lab


def block_target(lab: Lab, isp: str, target: str) -> None:
    """ISP drops echo requests to TARGET: only that target, only through that ISP, looks
    dead (cleared with the other faults by ``isp_clear_faults``)."""
    lab.run(isp, ["nft", f"add rule inet lab faults ip daddr {target} icmp type echo-request counter drop"])


def uplinks_with(lab: Lab, changes: Dict[str, dict]) -> List[dict]:
    """r1's ``multihome_uplinks`` from the lab inventory with CHANGES merged per uplink name."""
    host_vars = yaml.safe_load((lab.inventory / "host_vars" / "r1.yml").read_text())
    return [dict(up, **changes.get(up["name"], {})) for up in host_vars["multihome_uplinks"]]


def converge(lab: Lab, changes: Dict[str, dict], extra: Optional[dict] = None):
    """site.yml with r1's uplinks changed as CHANGES says."""
    return lab.playbook("-e", json.dumps({"multihome_uplinks": uplinks_with(lab, changes), **(extra or {})}))
