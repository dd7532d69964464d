"""Running the kernel's own tools (ip, nft, iptables-restore, conntrack) without a shell."""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import Optional, Sequence

from .errors import EngineError


@dataclass
class CmdResult:
    rc: int
    stdout: str
    stderr: str


class Runner:
    """Executes argv lists; subclass or wrap to log. Never uses a shell."""

    def run(self, argv: Sequence[str], stdin: Optional[str] = None, check: bool = True) -> CmdResult:
        try:
            proc = subprocess.run(
                list(argv), input=stdin, capture_output=True, text=True, check=False
            )
        except FileNotFoundError as exc:
            raise EngineError(f"command not found: {argv[0]} ({exc})") from exc
        res = CmdResult(proc.returncode, proc.stdout, proc.stderr)
        if check and res.rc != 0:
            raise EngineError(
                f"{' '.join(argv)} failed (rc={res.rc}): {res.stderr.strip() or res.stdout.strip()}"
            )
        return res
