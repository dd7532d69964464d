"""The nftables ruleset generation of this process's network namespace, read over netlink.

The kernel counts committed nf_tables transactions (``NFT_MSG_GETGEN``): every ``nft -f``,
``iptables-nft`` or other commit adds exactly one, a refused transaction or a listing adds
none. A long-running process that committed a table at generation G+1 after reading it at
G therefore knows the kernel still holds what it loaded for as long as the generation
stays G+1, and may skip ``nft list table`` (a process start and a parse) on its next change.
Reading it is one netlink request, no process.
"""
from __future__ import annotations

import socket
import struct
from typing import Optional

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_GETGEN = 16
NFTA_GEN_ID = 1
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, seq, pid
_NFGENMSG = struct.Struct("=BBH")  # family, version, res_id
_ATTR = struct.Struct("=HH")  # nlattr: length, type
NLA_TYPE_MASK = 0x3FFF


def parse_reply(data: bytes) -> Optional[int]:
    """NFTA_GEN_ID of a GETGEN reply; None for an error or anything unexpected."""
    if len(data) < _HEADER.size + _NFGENMSG.size:
        return None
    length, msg_type, _flags, _seq, _pid = _HEADER.unpack_from(data)
    if msg_type == NLMSG_ERROR or length > len(data):
        return None
    offset = _HEADER.size + _NFGENMSG.size
    while offset + _ATTR.size <= length:
        attr_len, attr_type = _ATTR.unpack_from(data, offset)
        if attr_len < _ATTR.size:
            return None
        if attr_type & NLA_TYPE_MASK == NFTA_GEN_ID and attr_len >= _ATTR.size + 4:
            return int(struct.unpack_from(">I", data, offset + _ATTR.size)[0])
        offset += (attr_len + 3) & ~3
    return None


def read_generation() -> Optional[int]:
    """The current generation, or None when it cannot be read (no netlink, no nf_tables)."""
    request = _HEADER.pack(_HEADER.size + _NFGENMSG.size, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN,
                           NLM_F_REQUEST, 1, 0) + _NFGENMSG.pack(socket.AF_UNSPEC, 0, 0)
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as sock:
            sock.settimeout(1.0)
            sock.sendto(request, (0, 0))
            return parse_reply(sock.recv(8192))
    except OSError:
        return None
