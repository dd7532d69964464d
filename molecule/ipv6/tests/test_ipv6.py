"""The ipv6 scenario: delegated prefixes leave unchanged via their own ISP, the ULA prefix is
translated (NPTv6) to each ISP's prefix in turn, and nothing is dropped as spoofed."""
from __future__ import annotations

import collections

C1_ULA = "fd00:0:1:1::10"
TRANSLATED = {"isp1": "2001:db8:101:ff::10", "isp2": "2001:db8:201:ff::10"}


def test_each_delegated_prefix_leaves_untranslated_via_its_own_isp(lab) -> None:
    for k in (1, 2):
        src = f"2001:db8:{k}01:1::10"
        assert set(lab.flows("c1", 6, family=6, src=src)) == {src}


def test_ula_source_is_translated_to_each_isps_prefix_nothing_spoofed(lab) -> None:
    spoofed = {isp: lab.spoofed(isp) for isp in TRANSLATED}
    seen = collections.Counter(lab.flows("c1", 20, family=6, src=C1_ULA))
    assert set(seen) == set(TRANSLATED.values()) and min(seen.values()) >= 5, seen
    assert {isp: lab.spoofed(isp) for isp in TRANSLATED} == spoofed


def test_nptv6_mapping_is_in_the_ruleset(host) -> None:
    ruleset = host.check_output("nft list table inet netops_multihome")
    for outside in ("2001:db8:101:ff::/64", "2001:db8:201:ff::/64"):
        assert outside in ruleset, ruleset
