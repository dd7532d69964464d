"""Debouncing the monitor's repairs: a burst of kernel events is one repair per uplink."""
from __future__ import annotations

from types import SimpleNamespace

from router import repair


def fake_monitor() -> SimpleNamespace:
    return SimpleNamespace(iface_of={"isp1": "wan1", "isp2": "wan2"}, names=["isp1", "isp2"])


def test_a_burst_is_one_repair_after_the_last_event_and_never_later_than_the_cap(monkeypatch) -> None:
    now = [100.0]
    monkeypatch.setattr(repair.time, "monotonic", lambda: now[0])
    done = []
    repairs = repair.Repairs(fake_monitor())  # type: ignore[arg-type]
    monkeypatch.setattr(repairs, "repair",
                        lambda uplink, why: done.append((uplink, sorted(why.reasons), now[0])))
    for step in range(5):  # an event every 50 ms: the debounce alone would wait forever
        now[0] = 100.0 + step * 0.05
        repairs.schedule("isp1", "address" if step else "link")
        repairs.run_due()
    assert done == []
    now[0] = 100.3
    repairs.run_due()
    assert done == [("isp1", ["address", "link"], 100.3)]


def test_uplinks_are_repaired_separately(monkeypatch) -> None:
    now = [10.0]
    monkeypatch.setattr(repair.time, "monotonic", lambda: now[0])
    done = []
    repairs = repair.Repairs(fake_monitor())  # type: ignore[arg-type]
    monkeypatch.setattr(repairs, "repair", lambda uplink, why: done.append(uplink))
    repairs.schedule("isp2", "route")
    assert abs(repairs.timeout(1.0) - repair.DEBOUNCE_S) < 1e-9
    now[0] = 10.0 + repair.DEBOUNCE_S
    repairs.run_due()
    assert done == ["isp2"] and repairs.timeout(1.0) == 1.0
