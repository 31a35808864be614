"""The one error type `fh` prints.

Every error a user can cause or fix (a missing file, a bad option, a configuration key, a host that is not
ready, a data plane that refused to start) is an FhError, or a module's own subclass of it (ConfigError,
ShmError, DataplaneError ...). Its message is one line that names the cause and the fix; `fh` prints it as
`fh: MESSAGE` and exits with `exit_status` (2). Anything else that escapes a command is a bug in fh: `fh`
shows its traceback and asks for a report (`main_guard`). Modules here import nothing else from handler, so
any module can raise these without an import cycle."""

from __future__ import annotations

import errno
import os
import sys
import traceback

EXIT_ERROR = 2        # an FhError or an OS error fh can explain
EXIT_BUG = 70         # EX_SOFTWARE: an exception fh did not expect (a bug); its traceback is printed
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C

REPORT = "fh: this is a bug in fh: please report it with the traceback above and the command line"


class FhError(Exception):
    """A user-facing error: printed as one line `fh: MESSAGE`, exit status 2."""

    exit_status = EXIT_ERROR


class InputError(FhError, ValueError):
    """A file, value or option given to fh that it cannot use (a ValueError too, as it was before there was an
    FhError, so that `except ValueError` in callers still holds)."""


# OS errors whose cause fh can name, with what to do; any other OSError is treated as a bug.
_OS_FIXES = {
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is not a directory; check the path",
    errno.EISDIR: "it is a directory; give a file",
    errno.EEXIST: "remove it or choose another name",
    errno.EACCES: "check its permissions, or run as a user who may use it",
    errno.EPERM: "this needs privileges (run as root or with the capability it names)",
    errno.EROFS: "the file system is read-only; choose another place",
    errno.ENOSPC: "the device is full; free space or choose another place",
    errno.EDQUOT: "the disk quota is exhausted; free space or choose another place",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n)",
    errno.ENOMEM: "not enough memory; free some or ask for less",
    errno.EADDRINUSE: "another process listens there; stop it or choose another address",
    errno.EADDRNOTAVAIL: "no interface of this host has that address; choose one it has",
    errno.ECONNREFUSED: "nothing listens there; start it or check the address",
}


def explain_os_error(e: OSError) -> str | None:
    """One line naming the file (or address) and the cause and fix of an OS error fh can explain, else None. An
    OSError without an errno was raised by fh itself with its own message (e.g. no writable run directory)."""
    if e.errno is None and len(e.args) == 1 and isinstance(e.args[0], str):
        return e.args[0]
    fix = _OS_FIXES.get(e.errno)
    if fix is None:
        return None
    what = e.strerror or os.strerror(e.errno)
    where = f"{e.filename}: " if e.filename is not None else ""
    if e.filename2 is not None:
        where = f"{e.filename} -> {e.filename2}: "
    return f"{where}{what}; {fix}"


class ClosedStdout:
    """sys.stdout of an fh started with its standard output closed (`fh ... >&-`: Python then has None there):
    the first output is a one-line FhError naming the cause and the fix, not an AttributeError on None.write
    (print() alone would drop it silently). A command that prints nothing (fh publish --hold) still runs."""

    def __init__(self, argv0: str = "fh") -> None:
        self.argv0 = argv0

    def write(self, text: str) -> int:
        raise FhError("standard output is closed (>&-): give it somewhere to go, e.g. > FILE, or > /dev/null to "
                      "discard what it prints")

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def _guard_closed_stdout(argv0: str) -> None:
    """When fd 1 is closed, put /dev/null there (else the next file fh opens would become fd 1, and a child's
    output, the data plane's statistics, would be written into it) and a ClosedStdout in sys.stdout."""
    try:
        os.fstat(1)
    except OSError:
        fd = os.open(os.devnull, os.O_WRONLY)
        if fd != 1:
            os.dup2(fd, 1)
            os.close(fd)
        sys.stdout = ClosedStdout(argv0)


def main_guard(run, argv0: str = "fh") -> int:
    """Run `run()` (a command) and turn how it ended into an exit status: FhError and the OS errors fh can
    explain as one line; Ctrl-C as 130 without a traceback; a closed stdout (fh ... | head) as success, one
    closed before fh started (fh ... >&-) as an FhError once there is something to print; any other exception
    as a bug, its traceback and a request to report it."""
    try:
        if sys.stdout is None:
            _guard_closed_stdout(argv0)
        return run()
    except FhError as e:
        print(f"{argv0}: {e}", file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        return 0
    except OSError as e:
        text = explain_os_error(e)
        if text is None:
            traceback.print_exc()
            print(REPORT, file=sys.stderr)
            return EXIT_BUG
        print(f"{argv0}: {text}", file=sys.stderr)
        return EXIT_ERROR
    except Exception:
        traceback.print_exc()
        print(REPORT, file=sys.stderr)
        return EXIT_BUG
