"""Which Link Status Monitor this router has: LSM 1.0.4 (Debian 12, package and binary
``lsm``) or its renamed successor foolsm 1.0.21 (Debian 13, package and binary ``foolsm``).

Both take the same command line (``--no-fork``, ``--config``, ``--pidfile``) and read the
same configuration keys the role writes (``defaults``/``connection``/``group`` blocks,
``unknown_up_notify``, ``logic``, ``member-connection``), so one config serves both; the
differences that remain are outside what the collection uses (see roles/multihome/README.md).
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import Optional

from engine.errors import EngineError

# The newer name first: a router that has both runs the maintained one.
FLAVOURS = ("foolsm", "lsm")
SBIN_DIRS = "/usr/local/sbin:/usr/sbin:/sbin"


@dataclass(frozen=True)
class LsmBinary:
    flavour: str  # "foolsm" or "lsm"
    path: str


def find_lsm(search_path: Optional[str] = None) -> LsmBinary:
    """The installed LSM; SEARCH_PATH defaults to $PATH plus the sbin directories
    (systemd units and cron do not always have them on $PATH)."""
    if search_path is None:
        search_path = os.pathsep.join(p for p in (os.environ.get("PATH", ""), SBIN_DIRS) if p)
    for flavour in FLAVOURS:
        found = shutil.which(flavour, path=search_path)
        if found:
            return LsmBinary(flavour, found)
    raise EngineError(
        f"no Link Status Monitor found in {search_path}: install foolsm (Debian 13 and later) "
        "or lsm (Debian 12), or set multihome_failover: false")
