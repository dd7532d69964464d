"""Validation of policy_route_table parameters: every bad input names option, value and rule."""
from __future__ import annotations

import pytest
from ansible_collections.netops.multihome.plugins.module_utils.engine.errors import ValidationError
from ansible_collections.netops.multihome.plugins.module_utils.engine.model.table_spec import parse_params
from ansible_collections.netops.multihome.plugins.module_utils.engine.routing.iproute import (
    FULL_MASK,
    Route,
    Rule,
)

GOOD_ROUTES = [
    {"dest": "default", "gateway": "198.51.100.1", "dev": "wan1"},
    {"dest": "198.51.100.0/30", "dev": "wan1", "src": "198.51.100.2"},
    {"dest": "default", "gateway": "2001:db8:f1:1::1", "dev": "wan1"},
]


def params(**kw):
    base = {"name": "isp1", "id": 101, "state": "present", "purge": True,
            "routes": GOOD_ROUTES, "rules": [{"priority": 1100, "fwmark": "0x100", "fwmask": 0xFF00}]}
    base.update(kw)
    return base


def test_good_input_normalised():
    spec = parse_params(params())
    assert spec.routes[0] == Route(4, "default", gateway="198.51.100.1", dev="wan1", metric=0)
    assert spec.routes[2].metric == 1024
    # a rule without addresses follows the families of the table's routes
    assert spec.rules == (Rule(4, 1100, 101, fwmark=0x100, fwmask=0xFF00),
                          Rule(6, 1100, 101, fwmark=0x100, fwmask=0xFF00))
    assert spec.families == (4, 6)


def test_rule_family_from_address_and_default_mask():
    spec = parse_params(params(rules=[{"priority": 1000, "from": "198.51.100.2/32"},
                                      {"priority": 1100, "fwmark": 7}]))
    assert spec.rules[0] == Rule(4, 1000, 101, src="198.51.100.2/32")
    assert spec.rules[1].fwmask == FULL_MASK and len(spec.rules) == 3


def test_absent_needs_no_id():
    spec = parse_params({"name": "isp1", "state": "absent"})
    assert spec.table_id is None and spec.routes == ()


BAD = [
    ("reserved id 254", {"id": 254}, "id", "reserved table 'main'"),
    ("reserved id 0", {"id": 0}, "id", "from 1 to"),
    ("id not an integer", {"id": "101"}, "id", "an integer"),
    ("reserved name", {"name": "main"}, "name", "not one of"),
    ("name with slash", {"name": "../x"}, "name", "1-31 characters"),
    ("bad address", {"routes": [{"dest": "default", "gateway": "198.51.100.300", "dev": "wan1"}]},
     "routes[0].gateway", "IPv4 or IPv6 address"),
    ("host bits in prefix", {"routes": [{"dest": "192.0.2.1/24", "dev": "lan1"}]},
     "routes[0].dest", "no host bits"),
    ("mixed families", {"routes": [{"dest": "192.0.2.0/24", "gateway": "2001:db8::1"}]},
     "routes[0]", "same family"),
    ("default without family", {"routes": [{"dest": "default", "type": "unreachable"}]},
     "routes[0].family", "needs family"),
    ("gateway on blackhole", {"routes": [{"dest": "192.0.2.0/24", "type": "blackhole",
                                          "gateway": "198.51.100.1"}]},
     "routes[0].gateway", "blackhole route has no gateway"),
    ("unknown type", {"routes": [{"dest": "192.0.2.0/24", "type": "nat", "dev": "wan1"}]},
     "routes[0].type", "unicast, unreachable"),
    ("unicast without next hop", {"routes": [{"dest": "192.0.2.0/24"}]},
     "routes[0]", "needs a gateway, a dev"),
    ("onlink without dev", {"routes": [{"dest": "192.0.2.0/24", "gateway": "10.0.0.1", "onlink": True}]},
     "routes[0].onlink", "both gateway and dev"),
    ("duplicate route", {"routes": [{"dest": "192.0.2.0/24", "dev": "wan1"},
                                    {"dest": "192.0.2.0/24", "dev": "lan1"}]},
     "routes[1].dest", "routes[0] already has"),
    ("metric negative", {"routes": [{"dest": "192.0.2.0/24", "dev": "wan1", "metric": -1}]},
     "routes[0].metric", "from 0 to"),
    ("fwmark too large", {"rules": [{"priority": 1100, "fwmark": 2**32}]}, "rules[0].fwmark", "0xffffffff"),
    ("fwmark not a number", {"rules": [{"priority": 1100, "fwmark": "0xzz"}]}, "rules[0].fwmark", "hex"),
    ("mask zero", {"rules": [{"priority": 1100, "fwmark": 1, "fwmask": 0}]}, "rules[0].fwmask", "from 1"),
    ("mark outside mask", {"rules": [{"priority": 1100, "fwmark": 0x101, "fwmask": 0xFF00}]},
     "rules[0].fwmark", "inside fwmask 0xff00"),
    ("mask without mark", {"rules": [{"priority": 1100, "fwmask": 0xFF}]},
     "rules[0].fwmask", "unless fwmark"),
    ("duplicate priority", {"rules": [{"priority": 1000, "from": "198.51.100.2/32"},
                                      {"priority": 1000, "oif": "wan1"}]},
     "rules[1].priority", "not already used by rules[0]"),
    ("priority of the main rule", {"rules": [{"priority": 32766, "oif": "wan1"}]},
     "rules[0].priority", "from 1 to 32765"),
    ("suppress too long for v4", {"rules": [{"priority": 1, "from": "192.0.2.0/24",
                                             "suppress_prefixlength": 33}]},
     "rules[0].suppress_prefixlength", "from 0 to 32"),
    ("rule mixed families", {"rules": [{"priority": 1, "from": "192.0.2.0/24", "to": "2001:db8::/32"}]},
     "rules[0]", "same family"),
    ("bad interface name", {"rules": [{"priority": 1, "iif": "a/b"}]}, "rules[0].iif", "interface name"),
    ("unknown key", {"rules": [{"priority": 1, "lookup": "main"}]}, "rules[0]", "known keys"),
    ("suppress helper clashes", {"main_suppress_default": {"priority": 1100}},
     "main_suppress_default.priority", "not used by any entry"),
    ("bad state", {"state": "gone"}, "state", "present, absent"),
    ("present without id", {"id": None}, "id", "required with state=present"),
]


@pytest.mark.parametrize("case,override,option,allowed", BAD, ids=[b[0] for b in BAD])
def test_bad_input(case, override, option, allowed):
    with pytest.raises(ValidationError) as err:
        parse_params(params(**override))
    assert err.value.option == option, str(err.value)
    assert allowed in err.value.allowed, str(err.value)
    assert str(err.value).startswith(f"{option}: invalid value")
