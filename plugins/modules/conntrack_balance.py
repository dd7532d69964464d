#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: conntrack-mark load balancing of new flows across uplinks, with NAT."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: conntrack_balance
short_description: Balance new connections across uplinks with conntrack marks, and NAT per uplink
version_added: "0.1.0"
description:
  - Chooses an uplink for every new connection coming from a LAN, by tier, weight and
    mode among the uplinks that are C(up), stores the choice in the conntrack mark and
    restores it for every later packet of the connection, in both directions. The
    routing rules (see M(netops.multihome.policy_route_table)) then send each packet
    by its mark.
  - A connection that already carries an uplink mark is B(never) re-chosen. A
    retransmitted SYN (the first one lost upstream) is still C(ct state new) but its
    conntrack entry already has the mark and the NAT binding of the first uplink, so it
    leaves by that uplink again and is never sent to another ISP with a foreign source
    address.
  - A connection that arrives on an uplink (a port forward, a service on the router,
    an administrator's SSH) is marked for that uplink, so its replies leave the way it
    came in. The C(output) hook restores the mark for the router's own reply packets.
  - LAN-to-LAN traffic, I(bypass) destinations, destinations on the router itself,
    broadcast, multicast and IPv6 link-local are never marked or NATed.
  - NAT per uplink by outgoing interface (C(snat) or C(masquerade), or none). IPv6 is
    never NATed unless I(uplinks[].nptv6) is set.
  - IPv6 only leaves by an uplink that can carry its source, since an ISP drops any other.
    Sources in an uplink's I(uplinks[].source_prefixes) always use that uplink; new flows
    from a translated prefix are balanced (same mode, tiers and weights) among the uplinks
    whose I(uplinks[].nptv6) translates it, never onto an uplink that does not. A LAN IPv6
    prefix that no uplink translates or owns is rejected, naming I(lans[].prefixes).
  - Only a new connection (C(ct state new)) without a mark of ours is ever given an
    uplink. A connection that existed before the first apply keeps the path it had
    (unmarked, by the main table). After a change of I(mark_mask) or of an uplink's
    I(mark), connections marked before are not re-chosen either; their old mark no
    longer selects an uplink table, so they follow the main table (those that left by
    another ISP break; change marks in a maintenance window). Renaming an uplink with the
    same I(mark) keeps its connections.
  - Owned objects only. The nftables backend uses the single table
    C(inet netops_multihome), whose marking chains run at priority C(mangle - 10) (-160),
    after conntrack and before iptables' mangle chains (-150), so the order is defined
    and an administrator's mangle rules see our marks. The iptables backend uses its own
    chains, named C(NETOPS_MH_*) (a prefix no other tool uses; no other chain, even an
    C(MH_*) one, is ever touched), in the mangle, nat and filter tables with one jump
    each from C(PREROUTING), C(OUTPUT), C(POSTROUTING) and C(FORWARD), inserted at
    position 1. Every other table, chain and rule is left byte-identical and nothing
    foreign is ever flushed.
  - One transaction per apply with nftables (C(nft -f -)). The iptables backend commits
    each table of each family separately (C(iptables-restore --noflush) per family); all
    are test-loaded before any is applied, and if one is refused after others were
    committed, those are put back and the module fails saying "partially applied, rolled
    back". If the kernel rejects the first, the previous ruleset stays in force.
  - Per packet, the nftables ruleset costs the same whatever the number of uplinks, LANs
    and prefixes; a marked connection's packets take one verdict-map lookup keyed by the
    masked conntrack mark, any other packet that is not new one accept; LAN and bypass
    prefixes, owned sources and pins are interval sets and maps consulted only for new
    connections.
  - The ruleset is compared with the kernel's own listing (chains rule by rule, sets and
    maps element by element); a re-apply of the same input changes nothing. A change of
    only the up/down set or the weights (what the failover hook does) refills only the
    choice chains and replaces the pin map elements, in one transaction, never the
    restore map, so established flows are not disturbed.
  - IPv4 is balanced only among uplinks with I(uplinks[].nat) other than C(none) (a LAN's
    private source cannot leave untranslated; sources an uplink owns still use it). An
    IPv6 source that no uplink translates or owns is left unmarked by both backends; it
    follows the main table, as it would without this module.
  - Switching I(backend) removes the objects of the other backend in the same run.
author:
  - netops.multihome maintainers (!UNKNOWN)
options:
  state:
    description: C(present) installs the ruleset; C(absent) removes the table or chains.
    type: str
    choices: [present, absent]
    default: present
  backend:
    description: Which firewall interface to use.
    type: str
    choices: [nftables, iptables]
    default: nftables
  mode:
    description:
      - How new connections are spread over the live uplinks of the active tier.
      - C(round_robin) is an exact weighted rotation (weights 2:1:1 send exactly 2 of
        every 4 new flows to the first uplink, interleaved).
      - C(random) picks each new flow's uplink at random with probability
        proportional to its weight.
      - C(source_hash) hashes the client's source address over a slot table of every
        uplink of the tier; when an uplink goes down only its slots are handed to the
        live ones, so clients of a live uplink never move. The iptables backend uses the
        C(cluster) match (at most 32 slots per tier); no mark bit outside I(mark_mask)
        is touched.
    type: str
    choices: [round_robin, random, source_hash]
    default: random
  mark_mask:
    description:
      - The bits of the packet and conntrack marks this module owns; other mark users
        keep the rest. An integer or a string such as C(0xff00). Must not be 0.
      - Before anything changes, the module refuses when another user of marks on the router
        (an C(ip rule) with a fwmark, an nftables rule outside this module's table, a legacy
        iptables rule outside the C(NETOPS_MH_) chains) tests or sets bits inside this mask
        (kube-proxy uses C(0xc000), Cilium C(0x0f00)); the error names each and a mask that fits.
    type: raw
    default: "0xff00"
  uplinks:
    description:
      - The uplinks (ISPs). Required with I(state=present).
      - Tiers, lowest number first; only the best tier that has an C(up) uplink of
        weight > 0 gets new flows. If every uplink is C(down) the top tier is kept in
        rotation as if all were up (sending flows somewhere beats dropping them).
    type: list
    elements: dict
    suboptions:
      name:
        description:
          - Name (letters, digits, C(_); 1-12 characters, starting with a letter). Used in chain
            names.
        type: str
        required: true
      interface:
        description: The interface towards the ISP; must exist on the router.
        type: str
        required: true
      mark:
        description: The uplink's mark; non-zero, unique, every bit inside I(mark_mask) (e.g. C(0x100)).
        type: raw
        required: true
      weight:
        description:
          - Share of new flows within its tier; C(0) takes no new flows (pins and inbound still
            work).
        type: int
        default: 1
      tier:
        description:
          - Priority group; lower tiers get new flows only while every uplink of the tiers above is
            down.
        type: int
        default: 1
      state:
        description:
          - C(down) takes the uplink out of the choice for new flows; its established flows keep
            their mark.
        type: str
        choices: [up, down]
        default: up
      nat:
        description: IPv4 source NAT on this uplink's interface.
        type: str
        choices: [masquerade, snat, none]
        default: masquerade
      snat_address:
        description: IPv4 address for I(nat=snat); required then.
        type: str
      nptv6:
        description:
          - IPv6 prefix translation (RFC 6296 style) of LAN prefixes to this uplink's
            prefix. nftables 1.0.6 has no stateless NPTv6, so this is the prefix-to-prefix
            (netmap) form of stateful NAT; C(ip6tables) uses C(NETMAP) likewise. Host bits
            are kept; connections from outside to a translated address are mapped back.
          - New IPv6 flows from I(inside) are balanced only among the uplinks that translate
            it; at least one of them needs a I(weight) above 0.
        type: list
        elements: dict
        suboptions:
          inside:
            description: The LAN prefix (must lie inside a I(lans[].prefixes) entry).
            type: str
            required: true
          outside:
            description: The uplink's prefix, same length as I(inside).
            type: str
            required: true
      source_prefixes:
        description:
          - Source prefixes that only this ISP accepts (for example the IPv6 prefix it
            delegated). New flows from them always leave by this uplink, unchanged, even
            while it is C(down) (no other ISP would accept them).
        type: list
        elements: str
      interface_may_be_absent:
        description:
          - The interface may not exist (an LTE stick, a PPPoE or VLAN link made later). While
            it is missing the uplink is absent and treated as C(down); the others are balanced
            and NATed normally. Without it a missing interface is an error naming it (typos).
        type: bool
        default: false
  lans:
    description: The LANs whose new flows are balanced. Prefixes of all LANs must not overlap.
    type: list
    elements: dict
    suboptions:
      name:
        description: Name of the LAN (letters, digits, C(_); 1-12 characters, starting with a letter).
        type: str
        required: true
      interfaces:
        description: Interfaces of the LAN; each must exist on the router.
        type: list
        elements: str
        required: true
      prefixes:
        description:
          - IPv4 and IPv6 prefixes of the LAN (destinations in them are never balanced).
          - Every address of an IPv6 prefix must be carried by some uplink, through its
            I(uplinks[].nptv6) or I(uplinks[].source_prefixes).
        type: list
        elements: str
        required: true
  pins:
    description:
      - Sources or destinations always sent by one uplink while it is C(up); when it is C(down) they
        follow the normal choice.
    type: list
    elements: dict
    default: []
    suboptions:
      uplink:
        description: Name of a configured uplink.
        type: str
        required: true
      sources:
        description: Source prefixes; an IPv6 one must be translated or owned by I(uplink).
        type: list
        elements: str
      destinations:
        description:
          - Destination prefixes. An IPv6 destination needs I(uplink) to have I(nptv6); it
            applies to sources that uplink translates.
        type: list
        elements: str
  bypass:
    description:
      - Destinations never marked or NATed (VPN endpoints, other sites); they follow the main
        routing table.
    type: list
    elements: str
    default: []
  nptv6_inbound:
    description:
      - I(uplinks[].nptv6) gives every host of a translated LAN prefix a public address, and
        the inbound mapping reaches it from anywhere unless forwarding is filtered.
      - C(established) (the default) drops new connections that arrive on an uplink for a
        translated LAN prefix; replies and related traffic (ICMPv6 errors) of connections
        the LAN opened pass. C(any) lets new inbound connections through (filter them
        yourself).
    type: str
    choices: [established, any]
    default: established
  recorded_states:
    description:
      - Also take an uplink out of the choice when the failover hook of the C(netops.multihome.multihome)
        role has recorded it down (C(/var/lib/netops-multihome/state)). The records are read,
        and the ruleset applied, under the lock the hook holds, so a failover event that
        arrives during the run is never overwritten by an older view of the states.
      - An uplink is down when its I(uplinks[].state) or its record says so.
    type: bool
    default: false
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    support: full
    platforms: posix
notes:
  - Needs C(nft) (nftables backend) or C(iptables-restore)/C(ip6tables-restore) (iptables
    backend), and C(ip) to check that interfaces exist.
  - The routing half (fwmark rules and per-uplink tables) is M(netops.multihome.policy_route_table).
  - With the iptables backend each table and family is its own commit; all are test-loaded
    first and a later refusal rolls back the earlier ones.
"""

EXAMPLES = r"""
- name: Balance two LANs over three ISPs, 2:1:1, the third as backup
  netops.multihome.conntrack_balance:
    mode: round_robin
    uplinks:
      - name: isp1
        interface: wan1
        mark: "0x100"
        weight: 2
        nat: snat
        snat_address: 198.51.100.2
        source_prefixes: ["2001:db8:101::/48"]  # delegated by isp1: its flows stay on isp1
      - {name: isp2, interface: wan2, mark: "0x200", weight: 1}
      - {name: isp3, interface: wan3, mark: "0x300", weight: 1, tier: 2}
    lans:
      - {name: office, interfaces: [lan1], prefixes: [192.168.1.0/24, "2001:db8:101:1::/64"]}
      - {name: lab, interfaces: [lan2], prefixes: [192.168.2.0/24]}
    pins:
      - {uplink: isp1, destinations: [203.0.113.0/24]}
    bypass: [198.51.100.128/25]

- name: Failover decided elsewhere - take isp2 out of the choice
  netops.multihome.conntrack_balance:
    uplinks:
      - {name: isp1, interface: wan1, mark: 256}
      - {name: isp2, interface: wan2, mark: 512, state: down}
    lans:
      - {name: office, interfaces: [lan1], prefixes: [192.168.1.0/24]}

- name: IPv6 with NPTv6 to each ISP's prefix, iptables backend
  netops.multihome.conntrack_balance:
    backend: iptables
    uplinks:
      - name: isp1
        interface: wan1
        mark: "0x100"
        nptv6: [{inside: "fd00:0:1:1::/64", outside: "2001:db8:101:1::/64"}]
      - name: isp2
        interface: wan2
        mark: "0x200"
        nptv6: [{inside: "fd00:0:1:1::/64", outside: "2001:db8:201:1::/64"}]
    lans:
      - {name: office, interfaces: [lan1], prefixes: [192.168.1.0/24, "fd00:0:1:1::/64"]}

- name: Remove everything this module installed
  netops.multihome.conntrack_balance:
    state: absent
"""

RETURN = r"""
changed:
  description: Whether the kernel ruleset differed from the wanted one (computed the same way in check mode).
  returned: always
  type: bool
ruleset:
  description:
    - The wanted ruleset as text (C(nft list table) or C(iptables-save) syntax), one section per
      backend/family.
  returned: always
  type: str
  sample: "# nftables\ntable inet netops_multihome {\n\tchain mark_isp1 {\n..."
commands:
  description: The transactions run (or, in check mode, that would run), each with its input.
  returned: always
  type: list
  elements: str
  sample: ["nft -f - <<'EOF'\nflush chain inet netops_multihome choose\n...EOF"]
changes:
  description: What changed, one line per table, chain or jump.
  returned: always
  type: list
  elements: str
  sample: ["nftables: replace chain choose"]
diff:
  description: Ruleset text before and after (with C(--diff)).
  returned: when diff mode is on
  type: dict
  sample: {"before": "# nftables\ntable inet netops_multihome {...", "after": "..."}
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.netops.multihome.plugins.module_utils.engine.errors import (  # noqa: E402
    EngineError,
)
from ansible_collections.netops.multihome.plugins.module_utils.engine.failover.state import (  # noqa: E402
    apply_recorded,
)
from ansible_collections.netops.multihome.plugins.module_utils.engine.model.policy import (  # noqa: E402
    BACKENDS,
    MODES,
    NAT_KINDS,
    NPTV6_INBOUND,
    STATES,
)
from ansible_collections.netops.multihome.plugins.module_utils.engine.ruleset.apply import (  # noqa: E402
    apply_policy,
)
from ansible_collections.netops.multihome.plugins.module_utils.engine.ruleset.mark_users import (  # noqa: E402
    check_policy_marks,
)
from ansible_collections.netops.multihome.plugins.module_utils.engine.runner import (  # noqa: E402
    Runner,
)

ARGUMENT_SPEC = {
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "backend": {"type": "str", "choices": list(BACKENDS), "default": "nftables"},
    "mode": {"type": "str", "choices": list(MODES), "default": "random"},
    "mark_mask": {"type": "raw", "default": "0xff00"},
    "uplinks": {
        "type": "list",
        "elements": "dict",
        "options": {
            "name": {"type": "str", "required": True},
            "interface": {"type": "str", "required": True},
            "mark": {"type": "raw", "required": True},
            "weight": {"type": "int", "default": 1},
            "tier": {"type": "int", "default": 1},
            "state": {"type": "str", "choices": list(STATES), "default": "up"},
            "nat": {"type": "str", "choices": list(NAT_KINDS), "default": "masquerade"},
            "snat_address": {"type": "str"},
            "nptv6": {
                "type": "list",
                "elements": "dict",
                "options": {
                    "inside": {"type": "str", "required": True},
                    "outside": {"type": "str", "required": True},
                },
            },
            "source_prefixes": {"type": "list", "elements": "str"},
            "interface_may_be_absent": {"type": "bool", "default": False},
        },
    },
    "lans": {
        "type": "list",
        "elements": "dict",
        "options": {
            "name": {"type": "str", "required": True},
            "interfaces": {"type": "list", "elements": "str", "required": True},
            "prefixes": {"type": "list", "elements": "str", "required": True},
        },
    },
    "pins": {
        "type": "list",
        "elements": "dict",
        "default": [],
        "options": {
            "uplink": {"type": "str", "required": True},
            "sources": {"type": "list", "elements": "str"},
            "destinations": {"type": "list", "elements": "str"},
        },
    },
    "bypass": {"type": "list", "elements": "str", "default": [], "no_log": False},
    "nptv6_inbound": {"type": "str", "choices": list(NPTV6_INBOUND), "default": "established"},
    "recorded_states": {"type": "bool", "default": False},
}


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
        required_if=[("state", "present", ("uplinks", "lans"))],
    )
    params = dict(module.params)
    recorded = params.pop("recorded_states")
    try:
        # Before anything changes: no other user of the router's marks may share our bits.
        check_policy_marks(params, Runner())
        if recorded:
            result = apply_recorded(params, Runner(), check=module.check_mode)
        else:
            result = apply_policy(params, Runner(), check=module.check_mode)
    except EngineError as exc:
        module.fail_json(msg=str(exc))
    out = {k: result[k] for k in ("changed", "ruleset", "commands", "changes")}
    if module._diff:
        out["diff"] = {"before": result["before"], "after": result["after"]}
    module.exit_json(**out)


if __name__ == "__main__":
    main()
