"""What the monitor does beside failover: the metrics file, the administrator's hooks and
the health quality read from LSM's reports (quality.py).

Settings come from ``operability.json`` beside the model (written by the role); a
missing file means the defaults, a bad value is logged and its default used, so a
mistake there never keeps the monitor from running.
"""
from __future__ import annotations

import json
import os
from typing import Callable, Dict, List, Optional

from engine.paths import Paths
from engine.runner import Runner

from .events import parse_event_line
from .metrics import FILENAME, Metrics
from .quality import Quality
from .traffic import Traffic
from .user_hooks import UserHooks

DEFAULTS: Dict[str, object] = {
    "metrics_dir": "/var/lib/prometheus/node-exporter",  # "" turns the metrics file off
    "metrics_interval": 5.0,
    "hooks_dir": "/etc/netops-multihome/hooks.d",
    "hook_timeout": 10.0,
}
RANGES = {"metrics_interval": (1.0, 300.0), "hook_timeout": (1.0, 600.0)}


def config_path(paths: Paths) -> str:
    return os.path.join(os.path.dirname(paths.model), "operability.json")


def load_config(path: str, log: Callable[[str], None]) -> Dict[str, object]:
    config = dict(DEFAULTS)
    try:
        with open(path, encoding="utf-8") as fh:
            given = json.load(fh)
    except FileNotFoundError:
        return config
    except (OSError, ValueError) as exc:
        log(f"{path}: cannot read ({exc}); using the defaults")
        return config
    for key, value in (given.items() if isinstance(given, dict) else ()):
        if key in RANGES:
            low, high = RANGES[key]
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high
            allowed = f"a number of seconds from {low:g} to {high:g}"
        elif key in DEFAULTS:
            ok = isinstance(value, str) and (value == "" or os.path.isabs(value))
            allowed = "an absolute path" + (' or "" (off)' if key == "metrics_dir" else "")
        else:
            ok, allowed = False, "one of " + ", ".join(DEFAULTS)
        if ok:
            config[key] = value
        else:
            log(f"{path}: {key}={value!r} ignored: allowed is {allowed}")
    return config


def written_files(paths: Paths) -> List[str]:
    """The files the monitor writes outside the collection's own directories: the metrics
    textfile (teardown removes it; its directory may be node_exporter's and stays)."""
    config = load_config(config_path(paths), lambda _message: None)
    return [os.path.join(str(config["metrics_dir"]), FILENAME)] if config["metrics_dir"] else []


class Operability:
    def __init__(self, paths: Paths, runner: Runner, log: Callable[[str], None]) -> None:
        config = load_config(config_path(paths), log)
        # LSM's RTT/loss reports and the interface counters, sampled as often as the
        # metrics file is written
        self.quality = Quality(paths, float(config["metrics_interval"]), log)  # type: ignore[arg-type]
        self.traffic = Traffic(paths, runner, float(config["metrics_interval"]), log)  # type: ignore[arg-type]
        self.metrics: Optional[Metrics] = None
        if config["metrics_dir"]:
            self.metrics = Metrics(paths, runner, str(config["metrics_dir"]),
                                   float(config["metrics_interval"]), log,  # type: ignore[arg-type]
                                   self.traffic.counters)
        self.hooks = UserHooks(str(config["hooks_dir"]), float(config["hook_timeout"]), log)  # type: ignore[arg-type]

    def start(self) -> None:
        self.quality.start()
        self.traffic.start()
        if self.metrics:
            self.metrics.start()
        self.hooks.start()

    def after_event(self, line: str) -> None:
        """Called with each event's log line once it is applied; never blocks."""
        event = parse_event_line(line)
        if event is None:
            return
        if self.metrics:
            self.metrics.observe(event)
        self.hooks.submit(event)

    def stop(self) -> None:
        self.hooks.stop()
        if self.metrics:
            self.metrics.stop()
        self.traffic.stop()
        self.quality.stop()
