"""The kernel's routes and policy rules as iproute2 sees them: read ``ip -j``, normalise, render.

Routes and rules are normalised so that what the planner wants and what the kernel reports
compare equal when they mean the same thing (canonical prefixes, kernel default metrics,
default fwmask, no device on non-unicast IPv6 routes).
"""
from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field

from ..errors import EngineError
from ..runner import Runner

ROUTE_TYPES = ("unicast", "unreachable", "blackhole", "prohibit")
# ip -N prints route types as numbers; keep both spellings readable.
_TYPE_NUMBERS = {"1": "unicast", "6": "blackhole", "7": "unreachable", "8": "prohibit"}
DEFAULT_METRIC = {4: 0, 6: 1024}
FULL_MASK = 0xFFFFFFFF
TABLE_NAMES = {253: "default", 254: "main", 255: "local"}

# Rule attributes that the planner understands; anything else makes a rule "foreign-shaped".
_RULE_KEYS = {"priority", "src", "srclen", "dst", "dstlen", "fwmark", "fwmask", "iif", "oif",
              "table", "suppress_prefixlen", "not", "protocol", "iif_detached", "oif_detached",
              "flags"}
_ROUTE_KEYS = {"type", "dst", "gateway", "dev", "prefsrc", "metric", "flags", "scope",
               "protocol", "pref", "table", "expires", "linkdown", "rt_offload",
               "rt_trap", "rt_offload_failed"}


def prefix(text: str, family: int | None = None) -> str:
    """Canonical prefix text; 'default' for a /0. Raises ValueError on bad input."""
    if text == "default":
        return "default"
    net = ipaddress.ip_network(text, strict=True)
    if family is not None and net.version != family:
        raise ValueError(f"{text} is not IPv{family}")
    return "default" if net.prefixlen == 0 else str(net)


def address(text: str) -> str:
    return str(ipaddress.ip_address(text))


@dataclass(frozen=True)
class Route:
    family: int
    dst: str
    type: str = "unicast"
    gateway: str | None = None
    dev: str | None = None
    src: str | None = None
    metric: int = 0
    onlink: bool = False
    # attributes this model does not manage (e.g. multipath); never equal to a desired route
    extra: str = ""

    def key(self) -> tuple[int, str, int]:
        """What the kernel treats as the same route slot (replace acts on it)."""
        return (self.family, self.dst, self.metric)

    def spec(self) -> list[str]:
        out = [] if self.type == "unicast" else [self.type]
        out.append(self.dst)
        if self.gateway:
            out += ["via", self.gateway]
        if self.dev:
            out += ["dev", self.dev]
        if self.src:
            out += ["src", self.src]
        out += ["metric", str(self.metric)]
        if self.onlink:
            out.append("onlink")
        return out

    def text(self) -> str:
        return " ".join(self.spec()) + (f" {self.extra}" if self.extra else "")


@dataclass(frozen=True)
class Rule:
    family: int
    priority: int
    table: int
    src: str | None = None
    dst: str | None = None
    fwmark: int | None = None
    fwmask: int | None = None
    iif: str | None = None
    oif: str | None = None
    suppress_prefixlength: int | None = None
    invert: bool = False
    extra: str = field(default="", compare=True)

    def selectors(self) -> list[str]:
        out = ["not"] if self.invert else []
        out += ["from", self.src or "all"]
        if self.dst:
            out += ["to", self.dst]
        if self.fwmark is not None:
            mark = f"{self.fwmark:#x}"
            out += ["fwmark", mark if self.fwmask in (None, FULL_MASK) else f"{mark}/{self.fwmask:#x}"]
        if self.iif:
            out += ["iif", self.iif]
        if self.oif:
            out += ["oif", self.oif]
        return out

    def spec(self) -> list[str]:
        out = ["priority", str(self.priority), *self.selectors(), "table", str(self.table)]
        if self.suppress_prefixlength is not None:
            out += ["suppress_prefixlength", str(self.suppress_prefixlength)]
        return out

    def text(self, names: dict[int, str] | None = None) -> str:
        """The rule as ``ip rule show`` prints it."""
        table = (names or {}).get(self.table) or TABLE_NAMES.get(self.table) or str(self.table)
        out = f"{self.priority}:\t" + " ".join(self.selectors()) + f" lookup {table}"
        if self.suppress_prefixlength is not None:
            out += f" suppress_prefixlength {self.suppress_prefixlength}"
        return out + (f" {self.extra}" if self.extra else "")


def _json(text: str, what: str) -> list:
    try:
        data = json.loads(text or "[]")
    except ValueError as exc:
        raise EngineError(f"cannot parse {what} JSON from ip: {exc}") from exc
    if not isinstance(data, list):
        raise EngineError(f"unexpected {what} JSON from ip: {text[:200]}")
    return data


def _extra(obj: dict, known: set) -> str:
    return " ".join(f"{k} {json.dumps(obj[k])}" for k in sorted(obj) if k not in known)


def parse_routes(text: str, family: int) -> list[Route]:
    routes = []
    for obj in _json(text, "route"):
        rtype = str(obj.get("type", "unicast"))
        rtype = _TYPE_NUMBERS.get(rtype, rtype)
        unicast = rtype == "unicast"
        flags = obj.get("flags") or []
        extra = _extra(obj, _ROUTE_KEYS)
        if rtype not in ROUTE_TYPES:
            extra = f"type {rtype} {extra}".strip()
        gw = obj.get("gateway")
        src = obj.get("prefsrc")
        routes.append(Route(
            family=family,
            dst=_kernel_prefix(obj.get("dst", "default"), family),
            type=rtype if rtype in ROUTE_TYPES else "unicast",
            gateway=address(gw) if gw else None,
            # IPv6 reports 'dev lo' on reject routes; it is not something one configures
            dev=obj.get("dev") if unicast else None,
            src=address(src) if src else None,
            metric=int(obj.get("metric", DEFAULT_METRIC[family])),
            onlink="onlink" in flags,
            extra=extra,
        ))
    return routes


def _kernel_prefix(text: str, family: int, length: int | None = None) -> str:
    if text in ("default", "all"):
        return "default"
    if length is None and "/" not in text:
        length = 32 if family == 4 else 128
    net = ipaddress.ip_network(text if length is None else f"{text}/{length}", strict=False)
    return "default" if net.prefixlen == 0 else str(net)


def parse_rules(text: str, family: int) -> list[Rule]:
    """Parse ``ip -N -j rule show`` (numeric tables) in kernel list order."""
    rules = []
    for obj in _json(text, "rule"):
        table = str(obj.get("table", "0"))
        src = obj.get("src", "all")
        dst = obj.get("dst", "all")
        mark = obj.get("fwmark")
        mask = obj.get("fwmask")
        supp = obj.get("suppress_prefixlen")
        extra = _extra(obj, _RULE_KEYS)
        rules.append(Rule(
            family=family,
            priority=int(obj.get("priority", 0)),
            table=int(table) if table.isdigit() else 0,
            src=None if src == "all" else _kernel_prefix(src, family, obj.get("srclen")),
            dst=None if dst == "all" else _kernel_prefix(dst, family, obj.get("dstlen")),
            fwmark=int(mark, 0) if mark is not None else None,
            fwmask=(int(mask, 0) if mask is not None else FULL_MASK) if mark is not None else None,
            iif=obj.get("iif"),
            oif=obj.get("oif"),
            suppress_prefixlength=int(supp) if supp is not None else None,
            invert="not" in obj,
            extra=extra if table.isdigit() else f"table {table} {extra}".strip(),
        ))
    return rules


@dataclass(frozen=True)
class Link:
    name: str
    prefixes: tuple[str, ...]  # connected networks, e.g. 198.51.100.0/30
    addresses: tuple[str, ...]


def parse_links(text: str) -> dict[str, Link]:
    links = {}
    for obj in _json(text, "address"):
        nets, addrs = [], []
        for info in obj.get("addr_info") or []:
            if "local" not in info or "prefixlen" not in info:
                continue
            iface = ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}")
            nets.append(str(iface.network))
            addrs.append(str(iface.ip))
        links[obj["ifname"]] = Link(obj["ifname"], tuple(nets), tuple(addrs))
    return links


def read_routes(runner: Runner, family: int, table: int) -> list[Route]:
    res = runner.run(["ip", "-j", f"-{family}", "route", "show", "table", str(table)], check=False)
    if res.rc != 0:
        # an empty table does not exist yet for the kernel: that is an empty table
        if "does not exist" in res.stderr:
            return []
        raise EngineError(f"ip -{family} route show table {table} failed: {res.stderr.strip()}")
    return parse_routes(res.stdout, family)


def read_rules(runner: Runner, family: int) -> list[Rule]:
    res = runner.run(["ip", "-N", "-j", f"-{family}", "rule", "show"])
    return parse_rules(res.stdout, family)


def read_links(runner: Runner) -> dict[str, Link]:
    return parse_links(runner.run(["ip", "-j", "address", "show"]).stdout)
