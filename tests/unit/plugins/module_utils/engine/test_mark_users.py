"""Foreign mark users read from real nft JSON / iptables-save text, and the mask suggested."""
from __future__ import annotations

import json

from ansible_collections.netops.multihome.plugins.module_utils.engine.ruleset import mark_users

META = {"meta": {"key": "mark"}}
CT = {"ct": {"key": "mark"}}


def ruleset(*exprs, table="k", family="ip", chain="pre"):
    rules = [{"rule": {"family": family, "table": table, "chain": chain, "handle": i, "expr": [e]}}
             for i, e in enumerate(exprs)]
    return json.dumps({"nftables": [{"metainfo": {}}, *rules]})


def bits(*exprs, **kw):
    return [b for _who, b in mark_users.nft_users(ruleset(*exprs, **kw))]


def test_nft_statements_give_the_bits_they_touch() -> None:
    assert bits({"mangle": {"key": META, "value": {"|": [META, 0x4000]}}}) == [0x4000]
    assert bits({"match": {"op": "==", "left": {"&": [META, 0xC000]}, "right": 0x4000}}) == [0xC000]
    assert bits({"mangle": {"key": META, "value": 1}}) == [0xFFFFFFFF]
    assert bits({"mangle": {"key": CT, "value": {"&": [META, 0xFF]}}}) == [0xFFFFFFFF]
    assert bits({"mangle": {"key": META, "value": {"&": [META, 0xFFFF00FF]}}}) == [0xFF00]
    assert bits({"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "x"}}) == []


def test_our_table_and_chains_are_not_foreign() -> None:
    clobber = {"mangle": {"key": META, "value": 0x100}}
    assert bits(clobber, family="inet", table="netops_multihome") == []
    assert bits(clobber, table="mangle", chain="NETOPS_MH_CHOOSE") == []


def test_iptables_save_lines() -> None:
    text = ("*mangle\n:PREROUTING ACCEPT [0:0]\n"
            "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n"
            "-A PREROUTING -m mark --mark 0x8000/0x8000 -j ACCEPT\n"
            "-A NETOPS_MH_CHOOSE -j MARK --set-xmark 0x100/0xff00\nCOMMIT\n")
    found = list(mark_users.iptables_users(text, "iptables"))
    assert [b for _w, b in found] == [0x4000, 0x8000]
    assert "KUBE-MARK-MASQ" in found[0][0] and "-t mangle" in found[0][0]


def test_fitting_mask_is_as_wide_and_free() -> None:
    assert mark_users.fitting_mask(0xFF00, 0xC000) == 0xFF0000
    assert mark_users.fitting_mask(0xFF00, 0x0F00 | 0xC000) == 0xFF0000
    assert mark_users.fitting_mask(0xFF00, 0xFFFFFF00) == 0xFF
    assert mark_users.fitting_mask(0xFF00, 0xFFFFFFFF) is None
