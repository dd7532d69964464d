"""The benches' parsers of tool output (play recap, -vvv log, strace -c, ip rule, conntrack -L)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
import converge
import dataplane
import hook_latency

RECAP = """
PLAY RECAP *********************************************************************
r1                         : ok=21   changed=12   unreachable=0    failed=0    skipped=4    rescued=0
r2                         : ok=19   changed=0    unreachable=0    failed=0    skipped=6    rescued=0
"""


def test_recap_counts_tasks_run_per_router_including_skipped() -> None:
    hosts = converge.recap("TASK [x]\nok: [r1]\n" + RECAP)
    assert hosts["r1"]["changed"] == 12
    assert [converge.tasks_per_host(hosts[h]) for h in ("r1", "r2")] == [25, 25]


def test_round_trips_count_ssh_and_sftp_commands_per_host() -> None:
    log = ("<10.254.1.2> SSH: EXEC ssh -C -o ControlMaster=auto 10.254.1.2 '/bin/sh -c ...'\n"
           "<10.254.1.2> SSH: EXEC sftp -b - -C 10.254.1.2\n"
           "<10.254.1.6> SSH: EXEC ssh 10.254.1.6 'python3'\n"
           "<10.254.1.2> ESTABLISH SSH CONNECTION FOR USER: root\n")
    assert converge.round_trips(log) == {"10.254.1.2": 2, "10.254.1.6": 1}


def test_strace_summary_gives_calls_per_syscall() -> None:
    summary = """% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 61.20    0.311000          12     25000           sendmsg
 30.00    0.150000           5     25117         3 recvmsg
------ ----------- ----------- --------- --------- ----------------
100.00    0.461000           9     50117         3 total
"""
    assert hook_latency.strace_counts(summary) == {"sendmsg": 25000, "recvmsg": 25117}


def test_uplink_mark_is_read_from_its_policy_rule() -> None:
    rules = ("4145:\tfrom all fwmark 0x9100/0xff00 lookup mh_isp2\n"
             "4165:\tfrom all fwmark 0xa500/0xff00 lookup mh_isp1\n")
    assert hook_latency.uplink_mark(rules, "isp1") == (0xA500, 0xFF00)
    assert hook_latency.uplink_mark(rules, "isp2") == (0x9100, 0xFF00)


def test_dports_are_the_original_direction_ones() -> None:
    listing = ("udp      17 3590 src=192.168.1.10 dst=203.0.113.10 sport=40000 dport=10001 [UNREPLIED] "
               "src=203.0.113.10 dst=198.51.100.2 sport=10001 dport=40000 mark=42240 use=1\n"
               "udp      17 3590 src=192.168.1.10 dst=203.0.113.10 sport=40000 dport=10000 [UNREPLIED] "
               "src=203.0.113.10 dst=198.51.100.2 sport=10000 dport=40000 mark=42240 use=1\n"
               "tcp      6 119 SYN_SENT src=192.168.2.10 dst=203.0.113.10 sport=40001 dport=5001 "
               "src=203.0.113.10 dst=198.51.100.6 sport=5001 dport=40001 mark=37120 use=1\n")
    assert hook_latency.dports(listing) == [10000, 10001]


def test_percentiles_by_nearest_rank() -> None:
    values = list(range(1, 101))
    assert (hook_latency.pct(values, 0.5), hook_latency.pct(values, 0.95)) == (50, 95)


def test_monitor_times_only_from_events_the_monitor_handled() -> None:
    lines = ["t uplink=isp1 state=down rules=changed ms=12.5 via=monitor process_ms=40",
             "t uplink=isp1 state=up rules=changed ms=80.1 process_ms=150"]
    assert hook_latency.monitor_times(lines) == ([12.5], [27.5])


def test_new_flows_during_a_window_count_failures_and_the_longest_gap() -> None:
    flows = [[0.0, "198.51.100.6"], [1.0, "198.51.100.6"], [1.1, "error:timeout"],
             [1.5, "198.51.100.6"], [3.0, "198.51.100.6"]]
    assert hook_latency.new_flows(flows, 1.0, 2.0) == {"opened": 3, "failed": 1, "max_gap_s": 1.5}


def test_trends_compare_ratios_across_uplinks_and_prefixes() -> None:
    def case(u: int, p: int, ratio: float) -> dict:
        return {"uplinks": u, "lans": 2, "prefixes": p, "ours/plain": {"gbps": ratio, "conn_per_s": ratio}}

    rows = dataplane.trends([case(2, 1, 0.99), case(16, 1, 0.9), case(2, 64, 0.95)])
    changes = {r["change"]: r["conn_per_s"] for r in rows}
    assert changes == {"U2->U16 (L2 P1)": -0.09, "P1->P64 (U2 L2)": -0.04}


def test_ratios_are_medians_of_per_round_ratios_so_drift_cancels() -> None:
    samples = {"ours": {"gbps": [9.0, 4.5, 1.0]}, "plain": {"gbps": [10.0, 5.0, 1.0]}}
    summary = dataplane.summarise(samples)
    assert summary["ours/plain"] == {"gbps": 0.9}
    assert summary["ours/plain of medians"] == {"gbps": 0.9}
    drifting = {"ours": {"gbps": [9.0, 2.7, 0.9]}, "plain": {"gbps": [10.0, 3.0, 1.0]}}
    assert dataplane.summarise(drifting)["ours/plain"] == {"gbps": 0.9}
