#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: one policy routing table, its routes and the rules that select it."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: policy_route_table
short_description: Manage one Linux policy routing table, its routes and the rules that select it
version_added: "0.1.0"
description:
  - Manages a single routing table as a whole - its name to id mapping, the routes in it
    and the C(ip rule)s that point at it - for IPv4 and IPv6.
  - The name to id mapping is kept in C(/etc/iproute2/rt_tables.d/<name>.conf), a file this
    module owns. The distribution's C(/etc/iproute2/rt_tables) is read for conflicts and never edited.
  - Current state is read with C(ip -j); changes are applied in one C(ip -batch) process per
    address family, ordered so that a route present before and after the run is never missing
    in between (routes are replaced in place) and a new rule is added before the rule it
    supersedes is removed. C(ip -batch) is not a transaction; when a line fails, the lines
    applied before it are undone (the plan knows each one's inverse), the rt_tables.d file is
    put back and the module fails with "partially applied, rolled back".
  - An O(id) whose table already holds routes or rules, or that rules point at, while this
    module's rt_tables.d file does not map it, belongs to someone else; the module refuses,
    naming the id and what is there.
  - Routes in other tables and rules pointing at other tables are never touched, except the
    single C(lookup main suppress_prefixlength 0) rule when O(main_suppress_default) is given.
  - A second run with the same input makes no netlink change at all and reports no change.
  - The kernel state is runtime only; it is lost at reboot. Re-applying it at boot is the job
    of the C(netops.multihome.multihome) role (which runs the same engine from a boot hook).
  - Every bad input fails before anything is changed, naming the option, the value and what is
    allowed, including checks against the router itself (interfaces, connected prefixes, local
    addresses, rule priorities already held by other tables).
author:
  - netops.multihome maintainers (!UNKNOWN)
options:
  name:
    description:
      - Name of the routing table, used in C(ip route show table NAME) and as the file name
        C(/etc/iproute2/rt_tables.d/NAME.conf).
      - 1 to 31 characters C([A-Za-z0-9_.-]), not C(local), C(main), C(default), C(unspec) or C(all).
    type: str
    required: true
  id:
    description:
      - Numeric table id, 1 to 4294967295. The kernel's reserved tables 0, 253, 254 and 255 are refused.
      - Refused when another name maps to this id, or this name maps to another id, in any
        rt_tables file; the error names the file. To renumber, remove the table with
        O(state=absent) first.
      - Required with O(state=present). With O(state=absent) the id is taken from the table's
        file when omitted.
    type: int
  state:
    description:
      - V(present) makes the table, routes and rules match the input.
      - V(absent) removes every route of the table, every rule pointing at it, and its rt_tables.d file.
    type: str
    choices: [present, absent]
    default: present
  purge:
    description:
      - Remove routes in this table and rules pointing at it that are not listed.
      - With V(false), unlisted routes and rules stay, except a rule at the same priority as a
        listed rule, which the listed rule supersedes.
    type: bool
    default: true
  dev_may_be_absent:
    description:
      - Leave out, instead of refusing, the routes whose O(routes[].dev) does not exist or
        whose O(routes[].src) or gateway prefix is not configured on it yet (an uplink that
        appears later). Rules are installed either way; re-run (or let the monitor) add the routes.
    type: bool
    default: false
  learn_from:
    description:
      - An interface whose address is not static (DHCP, PPPoE, LTE). When applied, the table also
        gets the routes learned from it now - its connected prefix or point-to-point peer, a default
        route via the gateway its DHCP client or router advertisements installed elsewhere (or the
        peer) - and a rule per address as source at O(learn_priority). Re-apply after it changes
        (the role's monitor does).
    type: str
  learn_priority:
    description: Priority of the learned source-address rules (needs O(learn_from)).
    type: int
  routes:
    description:
      - The routes of the table. A route is identified by its family, destination and metric;
        two entries with the same three are refused.
    type: list
    elements: dict
    default: []
    suboptions:
      dest:
        description: Destination prefix without host bits (V(192.0.2.0/24), V(2001:db8::/32)) or V(default).
        type: str
        required: true
      gateway:
        description:
          - Next hop address. Must lie inside a connected prefix of O(routes[].dev) (of any
            interface when no dev is given) unless O(routes[].onlink) is set. An IPv6
            link-local gateway needs O(routes[].dev).
        type: str
      dev:
        description: Outgoing interface; must exist on the router.
        type: str
      src:
        description: Preferred source address; must be configured on one of the router's interfaces.
        type: str
      metric:
        description: Route metric. Defaults to the kernel's default, 0 for IPv4 and 1024 for IPv6.
        type: int
      type:
        description: Route type. Only V(unicast) routes take gateway, dev, src and onlink.
        type: str
        choices: [unicast, unreachable, blackhole, prohibit]
        default: unicast
      onlink:
        description:
          - Treat the gateway as directly reachable on O(routes[].dev) even outside every
            connected prefix.
        type: bool
        default: false
      family:
        description:
          - Address family. Taken from the addresses when omitted; needed only for
            V(default) routes that have neither gateway nor src.
          - All addresses of one route must be of the same family.
        type: str
        choices: [ipv4, ipv6]
  rules:
    description:
      - The policy rules that select this table (C(ip rule ... lookup NAME)).
      - Priorities must be unique per family and must not be held by a rule of another table.
    type: list
    elements: dict
    default: []
    suboptions:
      priority:
        description: Rule priority, 1 to 32765 (0, 32766 and 32767 hold the kernel's own rules).
        type: int
        required: true
      from:
        description: Source prefix selector.
        type: str
      to:
        description: Destination prefix selector.
        type: str
      fwmark:
        description: Firewall mark selector, an integer or a C(0x) hex string, 0 to 0xffffffff.
        type: raw
      fwmask:
        description:
          - Mask applied to the packet mark before comparing with O(rules[].fwmark), 1 to
            0xffffffff (default all bits). O(rules[].fwmark) must lie inside it.
        type: raw
      iif:
        description:
          - Incoming interface selector (V(lo) matches traffic the router itself sends).
          - Not required to exist yet, as the kernel allows (e.g. a PPP link that comes up later).
        type: str
      oif:
        description:
          - Outgoing interface selector (for sockets bound to an interface).
          - Not required to exist yet.
        type: str
      suppress_prefixlength:
        description: Ignore a route found in this table whose prefix length is this value or shorter.
        type: int
      invert:
        description: Match packets the selectors do not match (C(ip rule not ...)).
        type: bool
        default: false
      family:
        description:
          - Families the rule is installed in. Taken from O(rules[].from)/O(rules[].to) when
            they are given; otherwise the families of the table's routes, or both when the
            table has no routes.
        type: str
        choices: [ipv4, ipv6, both]
  main_suppress_default:
    description:
      - Helper for the one rule outside this table that multihoming needs -
        C(priority N from all lookup main suppress_prefixlength 0). Placed before the
        per-uplink rules, it lets every non-default route of the main table (connected
        and LAN routes) win over the per-uplink default routes.
      - Installed in the families this table uses. Only the rule at exactly this priority is
        managed; it is shared by all tables that name the same priority and is not removed by
        O(state=absent) of a table - use O(main_suppress_default.state=absent) for that.
    type: dict
    suboptions:
      priority:
        description: Priority of the rule, 1 to 32765, different from every priority in O(rules).
        type: int
        required: true
      state:
        description: Whether the rule should exist.
        type: str
        choices: [present, absent]
        default: present
notes:
  - Needs C(ip) from iproute2 with JSON output (C(ip -j)), root, and Linux.
  - Check mode reports exactly the commands a real run would execute; C(changed) is computed
    by the same function in both modes.
  - Diff mode shows the table's file, routes and rules before and after in C(ip route) / C(ip rule) syntax.
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
seealso:
  - name: ip-rule(8)
    description: Policy routing rules.
    link: https://man7.org/linux/man-pages/man8/ip-rule.8.html
"""

EXAMPLES = r"""
- name: Table for the first uplink, selected by mark, by source address and by bound interface
  netops.multihome.policy_route_table:
    name: isp1
    id: 101
    routes:
      - {dest: default, gateway: 198.51.100.1, dev: wan1}
      - {dest: 198.51.100.0/30, dev: wan1, src: 198.51.100.2}
      - {dest: 192.0.2.0/24, dev: lan1}
      - {dest: default, gateway: "2001:db8:f1:1::1", dev: wan1}
    rules:
      - {priority: 1100, fwmark: "0x100", fwmask: "0xff00"}
      - {priority: 1000, from: 198.51.100.2/32}
      - {priority: 1001, oif: wan1}
    main_suppress_default:
      priority: 900

- name: A blackhole so marked traffic never leaks into the main table when the uplink is gone
  netops.multihome.policy_route_table:
    name: isp2
    id: 102
    routes:
      - {dest: default, gateway: 203.0.113.1, dev: wan2}
      - {dest: default, type: unreachable, family: ipv4, metric: 4000}

- name: Remove a table, its routes and the rules that point at it
  netops.multihome.policy_route_table:
    name: isp3
    state: absent
"""

RETURN = r"""
before:
  description: The table's file, routes and rules before the run, in C(ip route)/C(ip rule) syntax.
  returned: always
  type: str
  sample: |
    # /etc/iproute2/rt_tables.d/isp1.conf
    # ip -4 route show table isp1
    # ip -4 rule show (rules of table isp1 and the main suppress rule)
after:
  description: The same view after the run (in check mode, what a real run would leave).
  returned: always
  type: str
  sample: |
    # /etc/iproute2/rt_tables.d/isp1.conf
    101	isp1
    # ip -4 route show table isp1
    default via 198.51.100.1 dev wan1 metric 0
    # ip -4 rule show (rules of table isp1 and the main suppress rule)
    1000:	from 198.51.100.2/32 lookup isp1
commands:
  description: The C(ip) commands run, or that would run in check mode, in order.
  returned: always
  type: list
  elements: str
  sample:
    - ip -4 route replace default via 198.51.100.1 dev wan1 metric 0 table 101
    - ip -4 rule add priority 1000 from 198.51.100.2/32 table 101
table:
  description: Name and id of the table.
  returned: always
  type: dict
  sample: {name: isp1, id: 101}
"""

# Ansible modules keep their imports below the documentation strings.
from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.netops.multihome.plugins.module_utils.engine.errors import (  # noqa: E402
    EngineError,
)
from ansible_collections.netops.multihome.plugins.module_utils.engine.routing.iproute import (  # noqa: E402
    ROUTE_TYPES,
)
from ansible_collections.netops.multihome.plugins.module_utils.engine.routing.table import (  # noqa: E402
    apply_table,
)
from ansible_collections.netops.multihome.plugins.module_utils.engine.runner import (  # noqa: E402
    Runner,
)

ROUTE_OPTIONS = {
    "dest": {"type": "str", "required": True},
    "gateway": {"type": "str"},
    "dev": {"type": "str"},
    "src": {"type": "str"},
    "metric": {"type": "int"},
    "type": {"type": "str", "default": "unicast", "choices": list(ROUTE_TYPES)},
    "onlink": {"type": "bool", "default": False},
    "family": {"type": "str", "choices": ["ipv4", "ipv6"]},
}
RULE_OPTIONS = {
    "priority": {"type": "int", "required": True},
    "from": {"type": "str"},
    "to": {"type": "str"},
    "fwmark": {"type": "raw"},
    "fwmask": {"type": "raw"},
    "iif": {"type": "str"},
    "oif": {"type": "str"},
    "suppress_prefixlength": {"type": "int"},
    "invert": {"type": "bool", "default": False},
    "family": {"type": "str", "choices": ["ipv4", "ipv6", "both"]},
}
ARGUMENT_SPEC = {
    "name": {"type": "str", "required": True},
    "id": {"type": "int"},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "purge": {"type": "bool", "default": True},
    "dev_may_be_absent": {"type": "bool", "default": False},
    "learn_from": {"type": "str"},
    "learn_priority": {"type": "int"},
    "routes": {"type": "list", "elements": "dict", "options": ROUTE_OPTIONS, "default": []},
    "rules": {"type": "list", "elements": "dict", "options": RULE_OPTIONS, "default": []},
    "main_suppress_default": {"type": "dict", "options": {
        "priority": {"type": "int", "required": True},
        "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    }},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True,
                           required_if=[("state", "present", ["id"])])
    try:
        result = apply_table(dict(module.params), Runner(), check=module.check_mode)
    except EngineError as exc:
        module.fail_json(msg=str(exc))
    if module._diff:
        result["diff"] = {"before": result["before"], "after": result["after"]}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
