"""iptables rendering and planning (pure; the kernel round trip is in the integration tests)."""

from __future__ import annotations

# isort: off
from test_policy_params import INTERFACES, params, with_ipv6  # puts the collection on sys.path
from ansible_collections.netops.multihome.plugins.module_utils.engine.ruleset import iptables
from ansible_collections.netops.multihome.plugins.module_utils.engine.model.policy import parse_policy
from ansible_collections.netops.multihome.plugins.module_utils.engine.ruleset.plan import plan_ruleset
# isort: on

FOREIGN = """*mangle
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:ADMIN - [0:0]
-A PREROUTING -i eth9 -j ADMIN
-A ADMIN -j MARK --set-xmark 0x1/0xff
COMMIT
*nat
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -o eth9 -j MASQUERADE
COMMIT
"""


def tables(p=None, states=None, family=4):
    pol = parse_policy(p or params(), INTERFACES)
    return iptables.render_tables(plan_ruleset(pol, states), family)


def simulate_nth(rules, packets):
    """xt_statistic nth: a per-rule counter; rule matches when it wraps (every N-th packet seen)."""
    counters = [0] * len(rules)
    hits = []
    for _packet in range(packets):
        for i, rule in enumerate(rules):
            parts = rule.split()
            if "--every" not in parts:
                hits.append(parts[-1])
                break
            every = int(parts[parts.index("--every") + 1])
            counters[i] = 0 if counters[i] == every - 1 else counters[i] + 1
            if counters[i] == 0:
                hits.append(parts[-1])
                break
    return hits


def test_round_robin_cascade_is_exact_every_cycle():
    rules = tables()["mangle"]["NETOPS_MH_CHOOSE"]
    assert rules[0] == "-A NETOPS_MH_CHOOSE -m statistic --mode nth --every 4 --packet 0 -g NETOPS_MH_MARK_isp1"  # noqa: E501
    hits = simulate_nth(rules, 400)
    for cycle in range(100):
        window = hits[cycle * 4 : (cycle + 1) * 4]
        assert sorted(window) == ["NETOPS_MH_MARK_isp1", "NETOPS_MH_MARK_isp1", "NETOPS_MH_MARK_isp2", "NETOPS_MH_MARK_isp3"]  # noqa: E501


def test_random_cascade_probabilities_multiply_to_the_weights():
    rules = tables(params(mode="random"))["mangle"]["NETOPS_MH_CHOOSE"]
    probs = [float(r.split("--probability ")[1].split()[0]) for r in rules[:-1]]
    assert rules[0].endswith("-g NETOPS_MH_MARK_isp1") and rules[-1] == "-A NETOPS_MH_CHOOSE -g NETOPS_MH_MARK_isp3"  # noqa: E501
    share1 = probs[0]
    share2 = (1 - probs[0]) * probs[1]
    assert abs(share1 - 0.5) < 1e-9 and abs(share2 - 0.25) < 1e-9
    assert iptables._probability(1 / 3) == "0.33333333349"  # what iptables-save prints


def test_source_hash_matches_cluster_slots_and_never_writes_the_packet_mark():
    t = tables(params(mode="source_hash"), family=4)["mangle"]
    # slots isp1, isp2, isp3, isp1: isp1 owns slots 0 and 3
    assert t["NETOPS_MH_CHOOSE"][0] == (
        "-A NETOPS_MH_CHOOSE -m cluster --cluster-local-nodemask 0x00000009 --cluster-total-nodes 4"
        " --cluster-hash-seed 0x00004d48 -g NETOPS_MH_MARK_isp1"
    )
    assert len(t["NETOPS_MH_CHOOSE"]) == 3
    assert not any("MARK --set" in r or "HMARK" in r for r in t["NETOPS_MH_CHOOSE"])
    t6 = tables(with_ipv6(mode="source_hash"), family=6)["mangle"]
    assert "--cluster-total-nodes 3" in t6["NETOPS_MH_CHOOSE6_0"][0]


def test_restore_and_mark_rules():
    m = tables()["mangle"]
    assert m["NETOPS_MH_PRE"][:2] == [
        "-A NETOPS_MH_PRE -m connmark ! --mark 0x0/0xff00 -j CONNMARK --restore-mark --nfmask 0xff00 --ctmask 0xff00",  # noqa: E501
        "-A NETOPS_MH_PRE -m connmark ! --mark 0x0/0xff00 -j RETURN",
    ]
    assert m["NETOPS_MH_PRE"][2] == "-A NETOPS_MH_PRE -m conntrack ! --ctstate NEW -j RETURN"  # never re-chosen  # noqa: E501
    assert "-A NETOPS_MH_PRE -i wan2 -g NETOPS_MH_MARK_isp2" in m["NETOPS_MH_PRE"]
    assert m["NETOPS_MH_MARK_isp2"] == [
        "-A NETOPS_MH_MARK_isp2 -j MARK --set-xmark 0x200/0xff00",
        "-A NETOPS_MH_MARK_isp2 -j CONNMARK --set-xmark 0x200/0xff00",
    ]
    assert "-A NETOPS_MH_LAN -d 192.168.2.0/24 -j RETURN" in m["NETOPS_MH_LAN"]
    assert m["NETOPS_MH_PINS"] == [
        "-A NETOPS_MH_PINS -d 203.0.113.0/24 -g NETOPS_MH_MARK_isp2", "-A NETOPS_MH_PINS -g NETOPS_MH_CHOOSE"]


def test_nat_v4_only_unless_nptv6():
    assert tables()["nat"]["NETOPS_MH_NAT"] == [
        "-A NETOPS_MH_NAT -d 10.0.0.0/8 -j RETURN",
        "-A NETOPS_MH_NAT -o wan1 -j SNAT --to-source 198.51.100.2",
        "-A NETOPS_MH_NAT -o wan2 -j MASQUERADE",
        "-A NETOPS_MH_NAT -o wan3 -j MASQUERADE",
    ]
    assert tables(family=6)["nat"] == {}


def test_plan_fresh_declares_before_rules_and_inserts_one_jump():
    want = tables()
    script = iptables.plan(FOREIGN, want)
    lines = script.splitlines()
    first_rule = next(i for i, ln in enumerate(lines) if ln.startswith("-A"))
    assert all(ln.startswith(":NETOPS_MH_") for ln in lines[1:first_rule])
    assert "-I PREROUTING 1 -j NETOPS_MH_PRE" in lines and "-I POSTROUTING 1 -j NETOPS_MH_NAT" in lines
    assert not any("ADMIN" in ln or "eth9" in ln for ln in lines)
    assert not any(
        ln.startswith((":PREROUTING", ":POSTROUTING", ":OUTPUT", "-F PRE", "-F POST")) for ln in lines
    )


def _installed(want):
    """What iptables-save prints once our chains are in, next to the admin's rules."""
    mangle, nat = FOREIGN.split("*nat\n")
    mangle_lines = (
        [f":{c} - [0:0]" for c in want["mangle"]]
        + ["-A PREROUTING -j NETOPS_MH_PRE", "-A OUTPUT -j NETOPS_MH_OUT"]
        + [r for rules in want["mangle"].values() for r in rules]
    )
    nat_lines = [":NETOPS_MH_NAT - [0:0]", "-A POSTROUTING -j NETOPS_MH_NAT"] + want["nat"]["NETOPS_MH_NAT"]
    return (
        mangle.replace("COMMIT\n", "\n".join(mangle_lines) + "\nCOMMIT\n")
        + "*nat\n"
        + nat.replace("COMMIT\n", "\n".join(nat_lines) + "\nCOMMIT\n")
    )


def test_plan_noop_small_change_and_removal():
    want = tables()
    current = _installed(want)
    assert iptables.plan(current, want) is None
    small = iptables.plan(current, tables(states={"isp1": "down"}))
    assert small.splitlines()[:2] == ["*mangle", ":NETOPS_MH_CHOOSE - [0:0]"]
    assert ":NETOPS_MH_PRE - [0:0]" not in small and "*nat" not in small
    gone = iptables.plan(current, None)
    assert "-D PREROUTING -j NETOPS_MH_PRE" in gone and "-X NETOPS_MH_PRE" in gone and "-X NETOPS_MH_NAT" in gone  # noqa: E501
    assert gone.index("-D PREROUTING -j NETOPS_MH_PRE") < gone.index("-X NETOPS_MH_PRE")
    assert not any(w in gone for w in ("ADMIN", "eth9"))


def test_ipv6_is_balanced_only_among_uplinks_that_translate_its_source():
    m = tables(with_ipv6(), family=6)["mangle"]
    assert "NETOPS_MH_CHOOSE" not in m  # IPv6 never reaches the all-uplinks choice
    assert m["NETOPS_MH_PINS"] == ["-A NETOPS_MH_PINS -s fd00:0:1:1::/64 -g NETOPS_MH_CHOOSE6_0"]
    assert m["NETOPS_MH_CHOOSE6_0"] == [
        "-A NETOPS_MH_CHOOSE6_0 -m statistic --mode nth --every 3 --packet 0 -g NETOPS_MH_MARK_isp1",
        "-A NETOPS_MH_CHOOSE6_0 -m statistic --mode nth --every 2 --packet 0 -g NETOPS_MH_MARK_isp2",
        "-A NETOPS_MH_CHOOSE6_0 -g NETOPS_MH_MARK_isp1",
    ]
    assert "-A NETOPS_MH_LAN -s 2001:db8:101:1::/64 -g NETOPS_MH_MARK_isp1" in m["NETOPS_MH_LAN"]
    assert "-A NETOPS_MH_LAN ! -s ::/128 -m rpfilter --invert -j DROP" in m["NETOPS_MH_LAN"]  # IPv6 reverse path  # noqa: E501
    assert "NETOPS_MH_CHOOSE6_0" not in tables(with_ipv6(), family=4)["mangle"]


def test_source_hash_beyond_the_cluster_match_slots_is_refused_naming_the_weights():
    import pytest
    from ansible_collections.netops.multihome.plugins.module_utils.engine.errors import ValidationError

    p = params(mode="source_hash", backend="iptables")
    p["uplinks"][0]["weight"] = 31
    with pytest.raises(ValidationError, match=r"uplinks\[\]\.weight.*at most 32 with source_hash"):
        parse_policy(p, INTERFACES)
    p["backend"] = "nftables"
    parse_policy(p, INTERFACES)
