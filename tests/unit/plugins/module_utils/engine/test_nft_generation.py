from __future__ import annotations

import struct

from ansible_collections.netops.multihome.plugins.module_utils.engine.ruleset.nft_generation import (
    parse_reply,
)


def reply(*attrs: tuple[int, bytes], msg_type: int = (10 << 8) | 16) -> bytes:
    body = struct.pack("=BBH", 0, 0, 0)
    for kind, value in attrs:
        body += struct.pack("=HH", 4 + len(value), kind) + value + b"\0" * (-len(value) % 4)
    return struct.pack("=IHHII", 16 + len(body), msg_type, 0, 1, 0) + body


def test_generation_is_the_big_endian_gen_id_attribute_wherever_it_is():
    assert parse_reply(reply((1, struct.pack(">I", 70000)))) == 70000
    assert parse_reply(reply((3, b"nft\0"), (2, struct.pack(">I", 9)), (1, struct.pack(">I", 5)))) == 5


def test_an_error_a_truncated_or_a_reply_without_the_id_is_no_generation():
    assert parse_reply(reply((1, struct.pack(">I", 5)), msg_type=2)) is None
    assert parse_reply(reply((1, struct.pack(">I", 5)))[:18]) is None
    assert parse_reply(reply((2, struct.pack(">I", 5)))) is None
    assert parse_reply(reply((1, b"\0\0"))) is None
