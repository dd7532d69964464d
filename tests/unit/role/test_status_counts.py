"""`multihome status` counts live flows per uplink by masked mark, in one pass."""
from __future__ import annotations

from router.status import count_flows

PROC = (
    "ipv4     2 udp      17 3597 src=192.168.1.10 dst=203.0.113.10 sport=1 dport=2 [UNREPLIED] "
    "src=203.0.113.10 dst=198.51.100.2 sport=2 dport=1 mark=256 zone=0 use=2\n"
    "ipv4     2 tcp      6 431999 ESTABLISHED src=192.168.1.10 dst=203.0.113.10 sport=3 dport=4 "
    "src=203.0.113.10 dst=198.51.100.6 sport=4 dport=3 [ASSURED] mark=519 zone=0 use=2\n"
    "ipv6     10 udp      17 29 src=fd00::10 dst=2001:db8::1 sport=5 dport=6 src=2001:db8::1 "
    "dst=2001:db8:101::10 sport=6 dport=5 mark=256 zone=0 use=2\n"
    "ipv4     2 udp      17 29 src=192.168.1.10 dst=192.168.2.10 sport=7 dport=8 src=192.168.2.10 "
    "dst=192.168.1.10 sport=8 dport=7 mark=0 zone=0 use=2\n"
)


class NoConntrack:
    def run(self, argv, stdin=None, check=True):
        raise AssertionError(f"conntrack run although the proc file is readable: {argv}")


class ConntrackList:
    def __init__(self) -> None:
        self.calls: list = []

    def run(self, argv, stdin=None, check=True):
        from engine.runner import CmdResult

        self.calls.append(argv)
        return CmdResult(0, PROC if argv[-1] == "ipv4" else "", "")


def test_flows_counted_by_masked_mark_in_one_read_of_both_families(tmp_path) -> None:
    proc = tmp_path / "nf_conntrack"
    proc.write_text(PROC)
    counts = count_flows(NoConntrack(), {"isp1": 0x100, "isp2": 0x200, "isp3": 0x300}, 0xFF00, str(proc))
    assert counts == {"isp1": 2, "isp2": 1, "isp3": 0}  # 519 = 0x207: isp2 plus a foreign bit


def test_without_the_proc_file_conntrack_lists_each_family(tmp_path) -> None:
    runner = ConntrackList()
    counts = count_flows(runner, {"isp1": 0x100, "isp2": 0x200}, 0xFF00, str(tmp_path / "absent"))
    assert counts == {"isp1": 2, "isp2": 1}
    assert [c[-1] for c in runner.calls] == ["ipv4", "ipv6"]
