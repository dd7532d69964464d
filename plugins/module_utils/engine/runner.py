"""Running the kernel's own tools (ip, nft, iptables-restore, conntrack) without a shell."""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from typing import Optional, Sequence

from .errors import EngineError


@dataclass
class CmdResult:
    rc: int
    stdout: str
    stderr: str


# Output and error text of these tools is parsed ("does not exist", iptables-save): never translated.
C_LOCALE = {"LC_ALL": "C", "LANG": "C", "LANGUAGE": ""}


class Runner:
    """Executes argv lists in the C locale; subclass or wrap to log. Never uses a shell."""

    def run(self, argv: Sequence[str], stdin: Optional[str] = None, check: bool = True) -> CmdResult:
        try:
            proc = subprocess.run(
                list(argv), input=stdin, capture_output=True, text=True, check=False,
                env={**os.environ, **C_LOCALE},
            )
        except FileNotFoundError as exc:
            raise EngineError(f"command not found: {argv[0]} ({exc})") from exc
        res = CmdResult(proc.returncode, proc.stdout, proc.stderr)
        if check and res.rc != 0:
            raise EngineError(
                f"{' '.join(argv)} failed (rc={res.rc}): {res.stderr.strip() or res.stdout.strip()}"
            )
        return res

    def nft_generation(self) -> Optional[int]:
        """The nftables ruleset generation of the namespace these commands change, when it
        can be known without a command; None: unknown, so nothing read from the ruleset
        earlier may be trusted later (every Runner but ``LocalRunner``)."""
        return None


class LocalRunner(Runner):
    """For a long-running process in the router's own network namespace (the monitor): it
    reads the generation itself, so a table it loaded need not be listed again until
    someone else commits (``ruleset/nft_generation.py``)."""

    def nft_generation(self) -> Optional[int]:
        from .ruleset.nft_generation import read_generation

        return read_generation()
