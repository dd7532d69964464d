"""The JSON files the monitor's sampling threads keep in the run directory for
``multihome status`` and the metrics (quality.json, traffic.json): replaced atomically, a
failure logged once until writing works again, and read back as stale once the monitor
stopped refreshing them."""
from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Dict, Optional, Tuple

from engine.errors import EngineError
from engine.failover.state import write_atomic
from engine.paths import Paths


def stale_after(interval: float) -> float:
    """Seconds after which a value sampled every INTERVAL is no longer current."""
    return 2 * interval + 3.0


class Snapshot:
    def __init__(self, paths: Paths, filename: str, interval: float, log: Callable[[str], None]) -> None:
        self.path = os.path.join(paths.run_dir, filename)
        self.interval, self.log = interval, log
        self.error = ""

    def write(self, make: Callable[[float], Dict[str, Any]]) -> None:
        """Replace the file with MAKE(now) plus when it was written and the interval."""
        try:
            now = time.time()
            data = {**make(now), "written": round(now, 3), "interval": self.interval}
            write_atomic(self.path, json.dumps(data, sort_keys=True) + "\n", 0o644)
        except (OSError, EngineError) as exc:
            if str(exc) != self.error:
                self.log(f"cannot write {self.path}: {exc}")
            self.error = str(exc)
            return
        self.error = ""


def read_snapshot(paths: Paths, filename: str, now: Optional[float] = None) -> Optional[Tuple[dict, bool]]:
    """(the file's data, whether it is stale); None when it is missing or broken."""
    try:
        with open(os.path.join(paths.run_dir, filename), encoding="utf-8") as fh:
            data = json.load(fh)
        age = (time.time() if now is None else now) - float(data["written"])
        return data, age > stale_after(float(data["interval"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
