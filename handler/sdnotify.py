"""systemd's readiness protocol (sd_notify(3)), for `Type=notify` units: one datagram of `KEY=VALUE` lines to the
AF_UNIX socket named by $NOTIFY_SOCKET (a leading '@' names an abstract socket). Outside systemd, $NOTIFY_SOCKET is
unset and nothing is sent. The protocol is systemd's stable interface for services written without libsystemd.

`fh run` and `fh witness` say READY=1 once their SIGHUP handler is installed: until then a SIGHUP's default action
would end them, and systemd holds `systemctl reload` (ExecReload sends SIGHUP) until the unit is started."""

from __future__ import annotations

import os
import socket

_address: str | None = None


def take() -> None:
    """Take $NOTIFY_SOCKET out of the environment (kept here), so that no child (the data plane, fh-replicate, a
    recorder) inherits a right to speak for the unit."""
    global _address
    a = os.environ.pop("NOTIFY_SOCKET", None)
    if a:
        _address = a


def notify(*lines: str) -> bool:
    """Send lines ("READY=1", "STOPPING=1", "STATUS=...") as one datagram; True if sent. A socket that refuses is
    not an error of the service's: False."""
    take()
    if not _address:
        return False
    addr = "\0" + _address[1:] if _address.startswith("@") else _address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto("\n".join(lines).encode(), addr)
        return True
    except OSError:
        return False
