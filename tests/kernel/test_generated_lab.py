"""A generated topology builds on the real kernel: 16 uplinks, every link and ISP reachable."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from harness import Lab, lab_name

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lab"))
import generate


def test_sixteen_uplink_lab_reaches_every_gateway_and_every_isp_reaches_inet(tmp_path: Path) -> None:
    topo = generate.write(tmp_path / "u16.json", 1, 16, 2, 1)
    lab = Lab(lab_name("mhg"), str(topo))
    lab.down()
    lab.up()
    try:
        uplinks = lab.router("r1")["uplinks"]
        assert len(uplinks) == 16
        for up in uplinks:
            for gateway in (up["gateway4"], up["gateway6"]):
                lab.run("r1", ["ping", "-c1", "-W2", "-I", up["router_if"], gateway])
        for isp in lab.plan["isps"].values():
            for inet in (isp["inet4"], isp["inet6"]):
                lab.run(isp["name"], ["ping", "-c1", "-W2", inet.split("/")[0]])
        host_vars = json.loads((lab.inventory / "host_vars" / "r1.yml").read_text())
        assert [u["interface"] for u in host_vars["multihome_uplinks"]] == [f"wan{k}" for k in range(1, 17)]
    finally:
        lab.down()
