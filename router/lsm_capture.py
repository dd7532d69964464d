"""Run LSM so that the monitor receives what it syslogs.

LSM writes its reports only with syslog(3) (``openlog("lsm", LOG_PID, LOG_DAEMON)``: no
stderr copy, also with ``--no-fork``), which glibc always sends to ``/dev/log``. So LSM
runs in a mount namespace of its own in which ``/dev/log`` is the monitor's socket; the
monitor passes its event and error lines on to the system's ``/dev/log``. Where ``/dev/log``
does not exist (no syslog daemon, the lab), that namespace gets a ``/dev`` of its own
holding the real one's entries plus ``log``. Whatever fails here, LSM still starts (its
reports are then missing, failover is not affected).
"""
from __future__ import annotations

import shutil
from typing import List

# $1: the monitor's socket, $2: a scratch directory (made per process), $3: the pid file; then LSM.
_SCRIPT = r"""
sock=$1 scratch=$2.$$ pidfile=$3
shift 3
own_dev() {
    mkdir -p "$scratch" && mount --rbind /dev "$scratch" || return 1
    mount -t tmpfs -o mode=0755,nosuid multihome-lsm-dev /dev || { umount -l "$scratch"; return 1; }
    for entry in "$scratch"/* "$scratch"/.[!.]*; do
        [ -e "$entry" ] || [ -L "$entry" ] || continue
        new=/dev/${entry##*/}
        if [ -L "$entry" ]; then ln -s "$(readlink "$entry")" "$new"
        elif [ -d "$entry" ]; then mkdir "$new" && mount --rbind "$entry" "$new"
        else : > "$new" && mount --bind "$entry" "$new"
        fi || { umount -R -l /dev; umount -l "$scratch"; return 1; }
    done
    umount -l "$scratch"
    rm -f /dev/log && : > /dev/log
}
if [ -e /dev/log ] || own_dev; then
    mount --bind "$sock" /dev/log || true
fi
rmdir "$scratch" 2>/dev/null
[ -z "$pidfile" ] || echo $$ > "$pidfile"
exec "$@"
"""


def captured(argv: List[str], socket_path: str, scratch: str) -> List[str]:
    """ARGV run with its syslog going to SOCKET_PATH (plain ARGV without ``unshare``). The
    pid file named by ``--pidfile`` in ARGV gets LSM's pid: with ``--no-fork`` LSM 1.0.4
    does not write it itself."""
    unshare = shutil.which("unshare", path="/usr/bin:/bin:/usr/sbin:/sbin")
    if unshare is None:
        return argv
    pidfile = argv[argv.index("--pidfile") + 1] if "--pidfile" in argv[:-1] else ""
    return [unshare, "--mount", "--propagation", "private", "/bin/sh", "-c", _SCRIPT,
            "multihome-lsm", socket_path, scratch, pidfile, *argv]
