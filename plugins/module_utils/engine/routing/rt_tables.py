"""Routing table name <-> id mappings: read every rt_tables file, own one file per table.

The collection writes only ``<etc>/rt_tables.d/<name>.conf``; the distro's ``rt_tables``
and other files are read to detect conflicts and never edited.
"""
from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import EngineError, ValidationError

ETC_DIR = "/etc/iproute2"
# Newer iproute2 ship their defaults here; /etc overrides them. Both are read.
SHARE_DIR = "/usr/share/iproute2"

RESERVED_IDS = {0: "unspec", 253: "default", 254: "main", 255: "local"}
RESERVED_NAMES = frozenset(RESERVED_IDS.values()) | {"all"}
MAX_ID = 2**32 - 1
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,30}$")
HEADER = "# managed by netops.multihome (policy_route_table); do not edit\n"


@dataclass(frozen=True)
class Mapping:
    path: str
    table_id: int
    name: str


def own_path(name: str, etc_dir: str = ETC_DIR) -> str:
    return os.path.join(etc_dir, "rt_tables.d", f"{name}.conf")


def parse_file(path: str, text: str) -> list[Mapping]:
    out = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        try:
            table_id = int(fields[0], 0)
        except ValueError:
            continue
        out.append(Mapping(path, table_id, fields[1]))
    return out


def _table_files(base: str) -> list[str]:
    files = [os.path.join(base, "rt_tables")]
    ddir = os.path.join(base, "rt_tables.d")
    if os.path.isdir(ddir):
        files += sorted(
            os.path.join(ddir, f) for f in os.listdir(ddir) if f.endswith(".conf")
        )
    return files


def read_mappings(dirs: Sequence[str] = (ETC_DIR, SHARE_DIR)) -> list[Mapping]:
    out: list[Mapping] = []
    for base in dirs:
        for path in _table_files(base):
            if not os.path.isfile(path):
                continue
            with open(path, encoding="utf-8", errors="replace") as fh:
                out += parse_file(path, fh.read())
    return out


def validate_name(name: object) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name) or name in RESERVED_NAMES:
        raise ValidationError(
            "name", name,
            "a table name is 1-31 characters [A-Za-z0-9_.-] starting with a letter or '_', "
            f"not one of {sorted(RESERVED_NAMES)}",
        )
    return name


def validate_id(table_id: object) -> int:
    if isinstance(table_id, bool) or not isinstance(table_id, int) or not 1 <= table_id <= MAX_ID:
        raise ValidationError("id", table_id, f"an integer from 1 to {MAX_ID}")
    if table_id in RESERVED_IDS:
        raise ValidationError(
            "id", table_id,
            f"{table_id} is the kernel's reserved table '{RESERVED_IDS[table_id]}'; "
            "ids 0, 253, 254 and 255 are refused",
        )
    return table_id


def check_conflicts(name: str, table_id: int | None, mappings: Iterable[Mapping],
                    own: str) -> int | None:
    """Raise when the name or id is mapped to something else; return the id our file holds."""
    own_id = None
    for m in mappings:
        if m.path == own:
            if m.name != name:
                raise ValidationError(
                    "name", name,
                    f"{own} maps id {m.table_id} to '{m.name}', not to '{name}'; fix or remove that file",
                )
            own_id = m.table_id
    for m in mappings:
        if m.name == name and table_id is not None and m.table_id != table_id:
            raise ValidationError(
                "name", name,
                f"'{name}' is already mapped to id {m.table_id} in {m.path}; use that id "
                "or remove the table with state=absent first",
            )
        if table_id is not None and m.table_id == table_id and m.name != name:
            raise ValidationError(
                "id", table_id,
                f"id {table_id} is already mapped to table '{m.name}' in {m.path}; pick an unused id",
            )
    return own_id


def render_own(name: str, table_id: int) -> str:
    return f"{HEADER}{table_id}\t{name}\n"


def write_own(name: str, table_id: int, etc_dir: str = ETC_DIR) -> None:
    path = own_path(name, etc_dir)
    ddir = os.path.dirname(path)
    try:
        os.makedirs(ddir, mode=0o755, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=ddir)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(render_own(name, table_id))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        raise EngineError(f"cannot write {path}: {exc}") from exc


def remove_own(name: str, etc_dir: str = ETC_DIR) -> None:
    path = own_path(name, etc_dir)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise EngineError(f"cannot remove {path}: {exc}") from exc
