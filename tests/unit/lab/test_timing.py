"""How failover timing is read from a probe's flows."""
from __future__ import annotations

import pytest
from harness import first_via, recovery_time

OK1, OK2, ERR = "198.51.100.2", "198.51.100.6", "error:timeout"


def test_recovery_is_the_first_flow_after_the_last_failure() -> None:
    flows = [[9.0, OK1], [10.1, ERR], [10.2, OK2], [10.3, ERR], [11.4, OK2], [11.5, OK2]]
    assert recovery_time(flows, 10.0) == pytest.approx(1.4)


def test_no_failure_after_the_event_is_zero_and_never_recovering_is_none() -> None:
    assert recovery_time([[10.5, OK1], [10.6, OK2]], 10.0) == pytest.approx(0.5)
    assert recovery_time([[10.5, OK1], [10.6, ERR]], 10.0) is None


def test_first_via_finds_the_first_flow_on_an_uplink() -> None:
    flows = [[9.0, OK1], [10.5, OK2], [11.0, OK1], [12.0, OK1]]
    assert first_via(flows, OK1, 10.0) == pytest.approx(1.0)
    assert first_via(flows, "198.51.100.10", 10.0) is None
