"""Kernel settings: a per-interface key of a missing interface is skipped, not an error."""
from __future__ import annotations

from ansible_collections.netops.multihome.plugins.module_utils.engine.routing.sysctl import apply_sysctl


def test_keys_of_a_missing_interface_are_skipped_and_the_rest_is_written(tmp_path) -> None:
    for key, value in (("net/ipv4/ip_forward", "0"), ("net/ipv4/conf/wan1/rp_filter", "0")):
        path = tmp_path / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")
    want = {"net/ipv4/ip_forward": "1", "net/ipv4/conf/wan1/rp_filter": "2",
            "net/ipv4/conf/wan9/rp_filter": "2"}
    result = apply_sysctl(want, proc=str(tmp_path))
    assert result["skipped"] == ["net/ipv4/conf/wan9/rp_filter"]
    assert (tmp_path / "net/ipv4/ip_forward").read_text() == "1\n"
    assert (tmp_path / "net/ipv4/conf/wan1/rp_filter").read_text() == "2\n"
    assert not (tmp_path / "net/ipv4/conf/wan9").exists()
