"""conntrack_balance on a real kernel: ctb-* namespaces, real TCP flows, both backends.

The server answers every connection with the source address it saw, so each flow's
uplink is read from what actually crossed the ISPs (198.51.100.2/.6/.10 = isp1/2/3).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import ctb_helpers as h
from ansible_collections.netops.multihome.plugins.module_utils.engine.errors import (
    ValidationError,
)

BACKENDS = ["nftables", "iptables"]


@pytest.fixture(scope="module", autouse=True)
def topology():
    if not h.is_root():
        pytest.fail("these tests need root (network namespaces)")
    h.up()
    yield
    h.down()


@pytest.fixture(autouse=True)
def clean_state():
    h.syn_loss(False)
    h.flush_conntrack()
    yield
    for backend in BACKENDS:
        h.apply({"state": "absent", "backend": backend})


def uplinks(seen):
    return Counter(h.ISP_OF.get(s, s) for s in seen)


def rotation_start(backend: str, mode: str, **extra) -> dict:
    """Apply and return the params (fresh apply resets the round-robin counter)."""
    params = h.base_params(backend, mode, **extra)
    h.apply({"state": "absent", "backend": backend})
    h.apply(params)
    return params


@pytest.mark.parametrize("backend", BACKENDS)
def test_reapply_is_noop_and_check_mode_changes_nothing(backend):
    params = h.base_params(backend)
    first = h.apply(params)
    assert first["changed"] and first["commands"]
    again = h.apply(params)
    assert again == {**again, "changed": False, "commands": [], "changes": []}
    assert again["before"] == again["after"] == first["after"]

    checked = h.apply(params, states={"isp2": "down"}, check=True)
    assert checked["changed"]
    assert h.apply(params)["changed"] is False  # check mode left the kernel alone
    small = h.apply(params, states={"isp2": "down"})
    # the failover change touches only the choice (and pins), never the restore rules
    assert all(("choose" in c.lower() or "pins" in c.lower()) for c in small["changes"]), small["changes"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_round_robin_is_exact_2_1_1_over_3000_flows_from_two_lans(backend):
    rotation_start(backend, "round_robin")
    seen = h.flows("c1", h.SERVER4, 1500) + h.flows("c2", h.SERVER4, 1500)
    assert uplinks(seen) == {"isp1": 1500, "isp2": 750, "isp3": 750}


@pytest.mark.parametrize("backend", BACKENDS)
def test_random_is_within_2pp_of_2_1_1(backend):
    rotation_start(backend, "random")
    seen = h.flows("c1", h.SERVER4, 3000) + h.flows("c2", h.SERVER4, 3000)
    counts = uplinks(seen)
    assert None not in seen and sum(counts.values()) == 6000
    for isp, target in (("isp1", 0.50), ("isp2", 0.25), ("isp3", 0.25)):
        assert abs(counts[isp] / 6000 - target) < 0.02, counts


@pytest.mark.parametrize("backend", BACKENDS)
def test_source_hash_keeps_each_client_on_one_uplink(backend):
    params = rotation_start(backend, "source_hash")
    clients = {c: [f"192.168.{k}.{20 + i}" for i in range(8)] for k, c in ((1, "c1"), (2, "c2"))}

    def by_client():
        out = {}
        for client, sources in clients.items():
            seen = h.flows(client, h.SERVER4, 8 * 6, sources=sources)
            for i, src in enumerate(seen):
                out.setdefault(sources[i % 8], set()).add(src)
        return out

    before = by_client()
    assert all(len(s) == 1 for s in before.values()), before
    assert len({next(iter(s)) for s in before.values()}) >= 2  # the clients do spread
    h.apply(params, states={"isp2": "down"})
    h.flush_conntrack()
    after = by_client()
    for src, ups in before.items():
        assert len(after[src]) == 1
        if ups != {h.WAN4[2]}:
            assert after[src] == ups, (src, ups, after[src])  # clients of live uplinks never move
        else:
            assert after[src] != {h.WAN4[2]}


@pytest.mark.parametrize("backend", BACKENDS)
def test_long_flow_keeps_its_uplink_while_the_choice_changes(backend):
    params = rotation_start(backend, "round_robin")
    start = {k: h.counter(f"isp{k}", "longflow") for k in (1, 2, 3)}
    proc = h.long_flow("c1", h.SERVER4, messages=60, interval=0.02)
    time.sleep(0.3)
    h.flows("c1", h.SERVER4, 200)
    h.apply(params, states={"isp3": "down"})
    h.flows("c2", h.SERVER4, 200)
    h.apply(params, states={"isp1": "down"})
    h.flows("c2", h.SERVER4, 200)
    out = json.loads(proc.stdout.read())
    proc.wait(timeout=60)
    assert out["ok"] == 60 and len(out["seen"]) == 1
    used = [k for k in (1, 2, 3) if h.counter(f"isp{k}", "longflow") > start[k]]
    assert len(used) == 1 and h.WAN4[used[0]] == out["seen"][0]


def _syn_loss_run():
    h.syn_loss(True)
    spoofed = h.spoofed_total()
    lost = sum(h.counter(f"isp{k}", "synloss") for k in (1, 2, 3))
    seen = h.flows("c1", h.SERVER4, 60, parallel=60, timeout=8)
    lost = sum(h.counter(f"isp{k}", "synloss") for k in (1, 2, 3)) - lost
    h.syn_loss(False)
    return h.spoofed_total() - spoofed, lost, seen


@pytest.mark.parametrize("backend", BACKENDS)
def test_retransmitted_syn_keeps_its_uplink_no_spoofed_drops(backend):
    rotation_start(backend, "round_robin")
    spoofed, lost, seen = _syn_loss_run()
    assert lost >= 10  # plenty of SYNs were retransmitted
    assert spoofed == 0
    assert sum(1 for s in seen if s) >= 50


def test_reference_article_rules_leak_retransmitted_syns_as_spoofed():
    """The article's approach (re-choose on every ctstate NEW packet) that the module must beat."""
    cmds = [
        "-t mangle -N MARK-ISP1",
        "-t mangle -A MARK-ISP1 -j MARK --set-mark 0x100",
        "-t mangle -A MARK-ISP1 -j CONNMARK --save-mark",
        "-t mangle -N MARK-ISP2",
        "-t mangle -A MARK-ISP2 -j MARK --set-mark 0x200",
        "-t mangle -A MARK-ISP2 -j CONNMARK --save-mark",
        "-t mangle -A PREROUTING -i lan1 -m conntrack --ctstate ESTABLISHED,RELATED -j CONNMARK --restore-mark",  # noqa: E501
        "-t mangle -A PREROUTING -i lan1 -m conntrack --ctstate NEW -m statistic --mode nth --every 2 --packet 0 -j MARK-ISP1",  # noqa: E501
        "-t mangle -A PREROUTING -i lan1 -m conntrack --ctstate NEW -m statistic --mode nth --every 2 --packet 1 -j MARK-ISP2",  # noqa: E501
        f"-t nat -A POSTROUTING -o wan1 -j SNAT --to-source {h.WAN4[1]}",
        f"-t nat -A POSTROUTING -o wan2 -j SNAT --to-source {h.WAN4[2]}",
    ]
    for c in cmds:
        h.sh("r", "iptables", *c.split())
    try:
        spoofed, lost, _ = _syn_loss_run()
    finally:
        for table in ("mangle", "nat"):
            h.sh("r", "iptables", "-t", table, "-F")
        h.sh("r", "iptables", "-t", "mangle", "-X")
    assert lost >= 10
    assert spoofed > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_lan_to_lan_pins_and_bypass(backend):
    params = rotation_start(backend, "round_robin")
    assert h.flows("c1", h.C2, 5) == [h.C1] * 5  # LAN to LAN: not NATed
    assert h.flows("c2", "192.168.1.10", 5) == [h.C2] * 5
    assert uplinks(h.flows("c1", h.PINNED4, 12)) == {"isp3": 12}  # pinned destination
    assert h.flows("c1", h.SITE4, 5) == [h.C1] * 5  # bypass: main table via the site link, no NAT
    h.apply(params, states={"isp3": "down"})
    assert uplinks(h.flows("c1", h.PINNED4, 12)) == {"isp1": 8, "isp2": 4}  # pin follows the choice


@pytest.mark.parametrize("backend", BACKENDS)
def test_tiers_and_down_uplinks_get_no_new_flows(backend):
    extra = h.base_params(backend)["uplinks"]
    extra[2]["tier"] = 2
    params = rotation_start(backend, "round_robin", uplinks=extra)
    assert uplinks(h.flows("c1", h.SERVER4, 300)) == {"isp1": 200, "isp2": 100}
    h.apply(params, states={"isp2": "down"})
    assert uplinks(h.flows("c2", h.SERVER4, 100)) == {"isp1": 100}
    h.apply(params, states={"isp1": "down", "isp2": "down"})
    assert uplinks(h.flows("c1", h.SERVER4, 100)) == {"isp3": 100}
    h.apply(params, states={"isp1": "up", "isp2": "up"})
    assert uplinks(h.flows("c1", h.SERVER4, 30)) == {"isp1": 20, "isp2": 10}


@pytest.mark.parametrize("backend", BACKENDS)
def test_inbound_connection_to_uplink2_is_answered_via_uplink2(backend):
    spoofed = h.spoofed_total()
    # reference: without the module the router answers via its main default (isp1) and isp1 drops it
    assert h.flows("inet", h.WAN4[2], 2, port=h.ROUTER_PORT, timeout=1.5) == [None, None]
    assert h.spoofed_total() > spoofed
    h.apply(h.base_params(backend))
    spoofed = h.spoofed_total()
    assert h.flows("inet", h.WAN4[2], 10, port=h.ROUTER_PORT) == ["10.255.2.2"] * 10
    assert h.spoofed_total() == spoofed


@pytest.mark.parametrize("backend", BACKENDS)
def test_foreign_rules_are_identical_before_and_after(backend):
    h.install_foreign()
    try:
        before = h.foreign_snapshot()
        params = h.base_params(backend)
        for step in (
            lambda: h.apply(params),
            lambda: h.apply(params),
            lambda: h.apply(params, states={"isp1": "down"}),
            lambda: h.apply(h.base_params(backend, "source_hash")),
            lambda: h.apply({"state": "absent", "backend": backend}),
        ):
            step()
            assert h.foreign_snapshot() == before
    finally:
        h.sh("r", "nft", "delete", "table", "inet", "admin")
        for tool in ("iptables", "ip6tables"):
            for table in ("filter", "mangle", "nat"):
                h.sh("r", tool, "-t", table, "-F")
                h.sh("r", tool, "-t", table, "-X")


@pytest.mark.parametrize("backend", BACKENDS)
def test_ipv6_source_prefixes_unchanged_and_nptv6_balanced(backend):
    ups = h.base_params(backend)["uplinks"]
    ups[2]["weight"] = 0  # isp3 has no IPv6 translation: keep it out of the choice here
    rotation_start(backend, "round_robin", uplinks=ups)
    spoofed = h.spoofed_total()
    native = h.flows("c1", h.SERVER6, 40, sources=[h.C1_GUA[1], h.C1_GUA[2]])
    assert native == [h.C1_GUA[1], h.C1_GUA[2]] * 20  # no NAT, each prefix via its own ISP
    translated = h.flows("c1", h.SERVER6, 30, sources=[h.C1_ULA])
    assert Counter(translated) == {"2001:db8:101:ff::10": 20, "2001:db8:201:ff::10": 10}
    assert h.spoofed_total() == spoofed
    # inbound to the translated address reaches the LAN host and is answered
    assert h.flows("inet", "2001:db8:201:ff::10", 3) == ["fd99:2::2"] * 3  # inet's isp2-side address


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_input_fails_before_any_change(backend):
    h.apply(h.base_params(backend))
    listing = h.sh("r", "nft", "list", "ruleset")
    bad = h.base_params(backend)
    bad["uplinks"][1]["interface"] = "wan9"
    with pytest.raises(ValidationError, match=r"uplinks\[1\]\.interface: invalid value 'wan9'"):
        h.apply(bad)
    bad = h.base_params(backend)
    bad["uplinks"][2]["mark"] = "0x10000"
    with pytest.raises(ValidationError, match=r"uplinks\[2\]\.mark.*inside mark_mask 0xff00"):
        h.apply(bad)
    assert h.sh("r", "nft", "list", "ruleset") == listing


def test_module_check_diff_apply_and_reapply(tmp_path):
    """The real module through ansible-playbook inside the router namespace."""
    params = h.base_params("nftables")
    play = [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "tasks": [
                {"netops.multihome.conntrack_balance": params, "register": "r", "check_mode": "{{ chk }}"},
                {
                    "copy": {"content": "{{ r | to_json }}", "dest": str(tmp_path / "out-{{ run }}.json")},
                    "check_mode": False,
                },
            ],
        }
    ]
    (tmp_path / "play.yml").write_text(json.dumps(play))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(h.COLLECTIONS), ANSIBLE_NOCOLOR="1")
    results = {}
    for run, chk in (("check", "true"), ("apply", "false"), ("again", "false")):
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                h.ns("r"),
                os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
                "-i",
                "localhost,",
                "-c",
                "local",
                "-e",
                "ansible_python_interpreter=/usr/bin/python3",
                "-e",
                f"chk={chk}",
                "-e",
                f"run={run}",
                "--diff",
                str(tmp_path / "play.yml"),
            ],
            check=True,
            capture_output=True,
            env=env,
            timeout=120,
        )
        results[run] = json.loads((tmp_path / f"out-{run}.json").read_text())
    assert results["check"]["changed"] and results["check"]["diff"]["before"] == ""
    assert "table inet netops_multihome" in results["check"]["diff"]["after"]
    assert results["apply"]["changed"] and results["apply"]["ruleset"] == results["check"]["ruleset"]
    assert results["again"]["changed"] is False and results["again"]["commands"] == []
