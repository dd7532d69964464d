"""Why an uplink is in its state, from the sources recorded beside it (``detail``)."""
from __future__ import annotations

# The first source that says down names the reason; an operator's drain wins.
_ORDER = (("admin", "admin-drained"), ("carrier", "carrier"), ("probe", "probe"))


def sources_of(detail: str) -> dict:
    return dict(part.split("=", 1) for part in detail.split() if "=" in part)


def reason_of(state: str, detail: str) -> str:
    """``ok`` when up, ``absent`` without its interface, else admin-drained / carrier / probe
    (the source that says down)."""
    if state == "up":
        return "ok"
    if state == "absent":
        return "absent"
    sources = sources_of(detail)
    for source, reason in _ORDER:
        if sources.get(source) == "down":
            return reason
    # a source added later (e.g. absent, degraded) names itself
    return next((name for name, said in sorted(sources.items()) if said == "down"), "unknown")
