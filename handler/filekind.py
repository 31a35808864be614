"""What a path is when it is not a regular file, for the one-line errors of every reader that wants one (a FIFO
with no writer would block its reader forever, a device would be read without end, a directory fails late). A leaf:
it imports nothing of the package, so that any module may use it."""

from __future__ import annotations

import stat

_NOT_REGULAR = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def not_regular(mode: int) -> str | None:
    """What a file of this st_mode is when it is not a regular file ("a directory", "a FIFO", ...); None when it is
    one."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _NOT_REGULAR if test(mode)), "not a regular file")
