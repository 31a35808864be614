"""Supervision of an instance: the pidfile that keeps `fh run` to one per name, `fh stop`, `fh status`.

The pidfile RUN_DIR/NAME.pid (RUN_DIR: $FH_RUN_DIR, else /run/fh, else $XDG_RUNTIME_DIR/fh, else
/tmp/fh-run: the first that can be written) is locked with flock(LOCK_EX) by `fh run` for as long as it
lives, and the lock is inherited by the data plane, so it stays held while either process lives. The lock,
not the pid written in the file, says whether an instance runs: a pidfile left by a run that was killed is
unlocked, and the next `fh run` takes it over. The file holds the supervisor's pid on its first line (as
PIDFile= readers expect) and a JSON record on the second (config, lines, segment, data-plane pid, start).

When the supervisor ends it writes RUN_DIR/NAME.exit.json: why the data plane stopped, and its final
statistics (the drop counters live there, not in shared memory).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import time
from pathlib import Path

from .errors import FhError
from .process import boot_s, pid_alive, pid_is

DEFAULT_RUN_DIR = "/run/fh"
FALLBACK_RUN_DIR = "/tmp/fh-run"


class AlreadyRunning(FhError):
    """Another `fh run` (or its data plane) holds the instance's pidfile."""


class StateFileError(FhError):
    """A pidfile or exit record that fh run did not write (valid JSON of another shape: hand-edited, or another
    program's): unreadable, said in one line naming the file and the fix. Nothing is signalled on its say-so."""


# ---- where pidfiles live -------------------------------------------------------------------------------


def run_dirs() -> list[Path]:
    """Candidate directories, in order of preference. $FH_RUN_DIR, when set, is the only one."""
    env = os.environ.get("FH_RUN_DIR")
    if env:
        return [Path(env)]
    dirs = [Path(DEFAULT_RUN_DIR)]
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        dirs.append(Path(xdg) / "fh")
    dirs.append(Path(FALLBACK_RUN_DIR))
    return dirs


def writable_run_dir() -> Path:
    """The first candidate directory that exists (or can be made) and can be written."""
    tried = []
    for d in run_dirs():
        try:
            d.mkdir(mode=0o755, parents=True, exist_ok=True)
        except OSError as e:
            tried.append(f"{d} ({e.strerror})")
            continue
        if os.access(d, os.W_OK | os.X_OK):
            return d
        tried.append(f"{d} (not writable)")
    raise PermissionError(f"no directory for the pidfile: tried {', '.join(tried)}; set FH_RUN_DIR to a "
                          f"writable directory")


def pidfile_paths(name: str) -> list[Path]:
    from .segments import instance_name

    instance_name(name)
    return [d / f"{name}.pid" for d in run_dirs()]


# ---- what the records must hold ---------------------------------------------------------------------------
# fh status and fh stop act on these records (signal their pids, open their paths, print their numbers): a record
# of another shape is refused whole, with the first field found wrong, rather than trusted field by field.


def _opt(test, what: str):
    return lambda v: None if v is None or test(v) else f"not {what}"


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_PID = _opt(lambda v: _whole(v) and v > 0, "a process id (a whole number above 0)")
_INT = _opt(_whole, "a whole number")
_NUM = _opt(_number, "a number")
_STR = _opt(lambda v: isinstance(v, str), "a string")
_BOOL = _opt(lambda v: isinstance(v, bool), "true or false")


def _object(fields: dict):
    """A check of a JSON object (None allowed) whose fields pass their checks."""
    return lambda v: None if v is None else _fields_problem(v, fields)


def _list_of(item):
    """A check of a list (None allowed) whose items pass `item`."""
    def check(v):
        if v is None:
            return None
        if not isinstance(v, list):
            return "not a list"
        for i, x in enumerate(v):
            why = item(x)
            if why:
                return f"[{i}]{why}" if why.startswith((".", "[")) else f"[{i}] = {_text(x)}: {why}"
        return None
    return check


def _text(v) -> str:
    t = json.dumps(v)
    return t if len(t) <= 40 else t[:37] + "..."


def _fields_problem(rec, fields: dict) -> str | None:
    """What is wrong with a JSON object whose keys must pass `fields`' checks, as a path to the first field found
    wrong (`.stats.nic = 5: not a JSON object`); "not a JSON object" when it is none; None when it is sound."""
    if not isinstance(rec, dict):
        return "not a JSON object"
    for key, check in fields.items():
        why = check(rec.get(key))
        if why:
            return f".{key}{why}" if why.startswith((".", "[")) else f".{key} = {_text(rec.get(key))}: {why}"
    return None


def _shape_problem(rec, fields: dict, required: tuple = ()) -> str | None:
    """What is wrong with a whole record (a JSON object, `required` keys present, fields as `fields` says), or
    None."""
    if not isinstance(rec, dict):
        return f"it holds {_text(rec)}, not a JSON object"
    missing = next((k for k in required if rec.get(k) is None), None)
    return f"no {missing}" if missing else _fields_problem(rec, fields)


_RESTART = _object({"state": _STR, "snapshot": _STR, "journal_messages": _INT, "next_seq": _INT, "session": _STR,
                    "prepare_s": _NUM, "up_s": _NUM, "recovered_s": _NUM, "started_ns": _INT})
_PIDFILE_FIELDS = {
    "pid": _PID, "dataplane_pid": _PID, "recorder_pid": _PID, "boot_s": _NUM, "dataplane_boot_s": _NUM,
    "started_ns": _INT, "name": _STR, "config": _STR, "segment": _STR, "stdout": _STR,
    "lines": _list_of(_object({"name": _STR, "group": _STR, "port": _INT})),
    "reload": _object({"n": _INT, "ok": _BOOL, "said": _STR}), "restart": _RESTART,
    "replication": _object({"starts": _INT, "restarts": _INT, "fenced": _BOOL, "demotions": _INT}),
}
_EXIT_FIELDS = {
    "pid": _PID, "dataplane_pid": _PID, "recorder_pid": _PID, "name": _STR, "config": _STR, "segment": _STR,
    "started_ns": _INT, "stopped_ns": _INT, "uptime_s": _NUM, "rc": _INT, "signal": _STR, "reason": _STR,
    "restart": _RESTART,
    "stats": _object({"drops": _object({}), "nic": _object({"imissed": _INT, "ierrors": _INT}),
                      "mold": _object({"gaps": _INT})}),
}


def pidfile_problem(rec: dict) -> str | None:
    """What makes a pidfile's record one fh run did not write (a field of the wrong type; a pid that is not
    a process id: -5 would signal a process group), or None."""
    return _shape_problem(rec, _PIDFILE_FIELDS, ("pid",))


def exit_record_problem(rec) -> str | None:
    """What makes NAME.exit.json one fh run did not write, or None."""
    problem = _shape_problem(rec, _EXIT_FIELDS)
    if problem is None:
        drops = (rec.get("stats") or {}).get("drops") or {}
        bad = next((k for k, v in drops.items() if not _whole(v)), None)
        if bad is not None:
            problem = f".stats.drops.{bad} = {_text(drops[bad])}: not a whole number"
    return problem


def _malformed_pidfile(path: Path, problem: str) -> StateFileError:
    fix = (f"a process holds its lock: find it with fuser -v {path}, stop it, then remove the file" if is_locked(path)
           else f"remove it (rm {path}); the next fh run writes a new one")
    return StateFileError(f"{path}: not a pidfile fh run wrote ({problem}); {fix}")


# ---- the pidfile ----------------------------------------------------------------------------------------


def read_record(path: Path) -> dict | None:
    """The JSON record of a pidfile (None: no file, or not one of ours). A writer rewrites the file in place,
    so an empty or half-written read is retried briefly."""
    for _ in range(20):
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        lines = text.splitlines()
        if len(lines) >= 2:
            try:
                rec = json.loads(lines[1])
                if isinstance(rec, dict) and "pid" in rec:
                    return rec
            except json.JSONDecodeError:
                pass
        elif len(lines) == 1 and lines[0].strip().isdigit() and text.endswith("\n"):
            return {"pid": int(lines[0])}  # a bare pidfile (written by hand, or by something else)
        time.sleep(0.01)
    return None


def is_locked(path: Path) -> bool:
    """Whether some process holds the pidfile's lock (an instance lives). Probes with a shared lock that is
    dropped at once."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock taken here
    return False


def _utc(ns: int | None) -> str:
    from .shm import utc_text

    return utc_text(ns) if ns else "at an unknown time"


def already_running_text(name: str, rec: dict | None) -> str:
    rec = rec if rec and not pidfile_problem(rec) else {}
    pid = rec.get("pid", "?")
    return (f"instance {name} is already running (pid {pid}, started {_utc(rec.get('started_ns'))}"
            f"{', config ' + rec['config'] if rec.get('config') else ''}): fh stop --name {name} first")


class Pidfile:
    """RUN_DIR/NAME.pid, locked for the life of this process (and of children given its fd)."""

    def __init__(self, name: str, record: dict):
        self.name = name
        self.fd = -1
        self.previous: dict | None = None  # the record of a stale pidfile that was taken over
        for other in pidfile_paths(name):  # one started by another user may sit in another directory
            if is_locked(other):
                raise AlreadyRunning(already_running_text(name, read_record(other)))
        self.path = writable_run_dir() / f"{name}.pid"
        busy = 0
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                busy += 1
                if busy < 4:  # a reader probing the lock holds it for microseconds
                    time.sleep(0.05)
                    continue
                raise AlreadyRunning(already_running_text(name, read_record(self.path))) from None
            try:  # the file may have been removed by its last owner between our open and our lock
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self.fd = fd
        if os.fstat(fd).st_size:
            prev = read_record(self.path)
            self.previous = prev if prev and not pidfile_problem(prev) else None
        self.record = {"pid": os.getpid(), "name": name, "started_ns": time.time_ns(), "boot_s": boot_s(),
                       "dataplane_pid": None, "dataplane_boot_s": None, **record}
        self._write()

    def _write(self) -> None:
        """The record rewritten in place (the lock lives on this inode: no rename). Written over the old one, then
        cut to its length, so that a reader never finds the file empty or holding only its first line: between
        the two it reads the new record followed by the old one's tail on a line of its own (read_record takes
        the first two lines), during the write a mix that read_record's JSON check refuses and reads again.
        (Truncating first left the file empty for as long as this process was descheduled between the two
        calls: on a loaded host long enough for read_record's retries, and fh status showed no record.)"""
        data = f"{self.record['pid']}\n{json.dumps(self.record)}\n".encode()
        os.pwrite(self.fd, data, 0)
        os.ftruncate(self.fd, len(data))

    def update(self, **fields) -> None:
        self.record.update(fields)
        self._write()

    def fileno(self) -> int:
        return self.fd

    def release(self) -> None:
        """Remove the pidfile and drop the lock (in that order: no one can take a lock on a file that is
        about to vanish)."""
        if self.fd < 0:
            return
        try:
            if os.stat(self.path).st_ino == os.fstat(self.fd).st_ino:
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def stdout_path(pidfile: Path) -> Path:
    """Where the data plane's stdout (its final statistics, one JSON line) goes."""
    return pidfile.with_name(pidfile.name[: -len(".pid")] + ".dataplane.out")


def final_stats(path: Path) -> dict | None:
    """The data plane's final statistics: the last line of its stdout, if that is a JSON object."""
    try:
        lines = path.read_text().strip().splitlines()
        stats = json.loads(lines[-1])
    except (OSError, IndexError, json.JSONDecodeError):
        return None
    return stats if isinstance(stats, dict) else None


def exit_path(pidfile: Path) -> Path:
    return pidfile.with_name(pidfile.name[: -len(".pid")] + ".exit.json")


def write_exit_record(pidfile: Path, rec: dict) -> None:
    p = exit_path(pidfile)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(rec) + "\n")
    os.replace(tmp, p)


def read_exit_record(name: str) -> dict | None:
    """The newest NAME.exit.json among the run directories. One that is not JSON, or not of the shape fh run
    writes, is a StateFileError naming it (its fields would be trusted by fh status otherwise)."""
    best = None
    for pf in pidfile_paths(name):
        path = exit_path(pf)
        try:
            rec = json.loads(path.read_text())
        except (FileNotFoundError, PermissionError):
            continue
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            rec, problem = None, f"not JSON: {e}"
        else:
            problem = exit_record_problem(rec)
        if problem:
            raise StateFileError(f"{path}: not an exit record fh run wrote ({problem}); remove it (rm {path})")
        if best is None or rec.get("stopped_ns", 0) > best.get("stopped_ns", 0):
            best = rec
    return best


# ---- looking an instance up -----------------------------------------------------------------------------


def lookup(name: str) -> tuple[Path | None, dict | None, bool]:
    """(pidfile, its record, locked): a locked pidfile first, else the first one found, else (None, None,
    False)."""
    found = None
    for p in pidfile_paths(name):
        if not p.exists():
            continue
        if is_locked(p):
            return p, _checked_record(p), True
        found = found or p
    if found is None:
        return None, None, False
    return found, _checked_record(found), False


def _checked_record(path: Path) -> dict | None:
    """read_record, and a StateFileError when the record is not of the shape fh run writes."""
    rec = read_record(path)
    problem = pidfile_problem(rec) if rec is not None else _unparsed_problem(path)
    if problem:
        raise _malformed_pidfile(path, problem)
    return rec


def _unparsed_problem(path: Path) -> str | None:
    """Why a pidfile that read_record found no record in is not one fh run wrote (garbage, one line that is not a
    pid, an empty file no one holds: it was reported as a stale pidfile of "pid None"), or None: gone meanwhile,
    or empty and locked (an fh run starting: it writes its record once it holds the lock)."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    if not text.strip():
        return None if is_locked(path) else "it is empty"
    first = text.splitlines()[0][:40].decode("utf-8", "replace")
    return f"it holds {first!r}, not a pid and its JSON record"


def _live_pids(rec: dict) -> tuple[int | None, int | None]:
    """(supervisor pid, data-plane pid) of a record, each None unless that very process still lives."""
    sup = rec.get("pid")
    dp = rec.get("dataplane_pid")
    return (sup if pid_is(sup, rec.get("boot_s")) else None,
            dp if pid_is(dp, rec.get("dataplane_boot_s")) else None)


# ---- fh stop --------------------------------------------------------------------------------------------


def _wait_unlocked(path: Path, pids: list[int], deadline: float) -> bool:
    while True:
        for p in pids:  # reap if they are our children (tests); harmless otherwise
            try:
                os.waitpid(p, os.WNOHANG)
            except ChildProcessError:
                pass
        if not is_locked(path):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _remove_unlocked(path: Path) -> None:
    """Remove a pidfile no one holds (under its lock, so that a new fh run's file is never removed)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.stat(path).st_ino == os.fstat(fd).st_ino:
            os.unlink(path)
    except (BlockingIOError, FileNotFoundError):
        pass
    finally:
        os.close(fd)


def _signal(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def stop(name: str, timeout: float = 10.0) -> tuple[int, str]:
    """Stop instance NAME: SIGTERM to `fh run` (which forwards it to the data plane), SIGKILL to both once
    `timeout` seconds pass. (exit status, one-line message). Stopping an instance that does not run is not
    an error."""
    path, rec, locked = lookup(name)
    if path is None:
        return _stop_unsupervised(name, timeout)
    rec = rec or {}
    if not locked:
        return 0, (f"instance {name} is not running (its pidfile {path}, of pid {rec.get('pid', '?')}, was left "
                   f"by a run that did not stop cleanly; the next fh run replaces it)")
    sup, dp = _live_pids(rec)
    target = sup or dp
    if target is None:
        return 1, (f"instance {name}: {path} is locked but neither pid {rec.get('pid')} nor data-plane pid "
                   f"{rec.get('dataplane_pid')} is alive: find the holder with: fuser -v {path}")
    t0 = time.monotonic()
    _signal(target, signal.SIGTERM)
    if _wait_unlocked(path, [p for p in (sup, dp) if p], t0 + timeout):
        took = time.monotonic() - t0
        who = f"pid {sup}" if sup else f"its data plane, pid {dp}, whose fh run was gone"
        msg = f"instance {name} stopped ({who}, in {took:.1f} s)"
        if not sup:  # no fh run to tell why: say it here, with the statistics the data plane left
            out = Path(rec["stdout"]) if rec.get("stdout") else stdout_path(path)
            stats = final_stats(out)
            reason = (f"the data plane, whose fh run was gone, stopped "
                      f"{'cleanly' if stats else 'without final statistics'} on SIGTERM from fh stop")
            write_exit_record(path, {**_exit_base(rec), "stopped_ns": time.time_ns(), "rc": None, "signal": None,
                                     "reason": reason, "stats": stats,
                                     "uptime_s": _uptime(rec)})
            out.unlink(missing_ok=True)
            _remove_unlocked(path)
        try:
            ex = read_exit_record(name)
        except StateFileError:  # (one left in another run directory: fh status names it)
            ex = None
        if ex and ex.get("started_ns") == rec.get("started_ns") and ex.get("reason"):
            msg += f": {ex['reason']}"
        return 0, msg
    killed = [p for p in (sup, dp) if p and _signal(p, signal.SIGKILL)]
    gone = _wait_unlocked(path, killed, time.monotonic() + 5.0)
    write_exit_record(path, {**_exit_base(rec), "stopped_ns": time.time_ns(), "rc": None, "signal": "SIGKILL",
                             "uptime_s": _uptime(rec),
                             "reason": f"killed by fh stop (SIGKILL) after not stopping within {timeout:g} s of "
                                       f"SIGTERM", "stats": None})
    text = (f"instance {name} did not stop within {timeout:g} s of SIGTERM; killed pid"
            f"{'s' if len(killed) > 1 else ''} {', '.join(map(str, killed)) or '(none left)'} with SIGKILL")
    if not gone:
        return 1, text + f"; {path} is still locked: find the holder with: fuser -v {path}"
    _remove_unlocked(path)
    return 1, text + (f"; its segment {rec['segment']} may be left behind (the next fh run replaces it)"
                      if rec.get("segment") else "")


# ---- fh reload ------------------------------------------------------------------------------------------


def reload(name: str, timeout: float = 30.0) -> tuple[int, str]:
    """SIGHUP to instance NAME's fh run (systemctl reload's ExecReload), then wait until it is done: fh run takes it
    up (the outcome in its record's `reload`), and each fh-replicate it told re-reads the witnesses' key file (its
    status's witness_rekeys rises). (exit status, one line): 0 once done; 1 when fh run refused the key file (it
    says why; the key in use stays), when the instance does not run, or when `timeout` seconds pass first, so
    that `systemctl reload` and the Ansible handler behind it fail where the reload did not take."""
    from . import replicate as R

    path, rec, locked = lookup(name)
    rec = rec or {}
    sup = rec.get("pid") if locked and pid_is(rec.get("pid"), rec.get("boot_s")) else None
    if sup is None:
        return 1, (f"instance {name} is not running under fh run (no live pidfile in {', '.join(map(str, run_dirs()))})"
                   f": nothing to reload; start it (systemctl start fh@{name}, or fh run --config ...)")
    n0 = (rec.get("reload") or {}).get("n", 0)
    deadline = time.monotonic() + timeout
    if not _signal(sup, signal.SIGHUP):
        return 1, f"instance {name}: fh run (pid {sup}) is gone"
    while True:
        out = (read_record(path) or {}).get("reload") or {}
        if out.get("n", 0) > n0:
            break
        if time.monotonic() >= deadline:
            return 1, (f"instance {name}: fh run (pid {sup}) did not take the SIGHUP up within {timeout:g} s (still "
                       f"starting, or an fh run older than fh reload): see its log (journalctl -u fh@{name})")
        time.sleep(0.02)
    said = out.get("said", "")
    if not out.get("ok"):
        return 1, f"instance {name}: {said}"
    waiting = list(out.get("wait") or [])
    while waiting:
        for w in list(waiting):
            try:
                st = R.read_status(w["status"])
            except R.ReplicateError:
                st = None
            if not pid_alive(w["pid"]) or (st and st["pid"] != w["pid"]):
                waiting.remove(w)  # gone, or replaced: a new fh-replicate reads the key at its start
            elif st and st["witness_rekeys"] > w["rekeys"]:
                waiting.remove(w)
        if waiting and time.monotonic() >= deadline:
            who = " and ".join(f"{w['what']} (pid {w['pid']})" for w in waiting)
            return 1, (f"instance {name}: {who} did not re-read the key within {timeout:g} s (its status counts no "
                       f"re-read; its line in journalctl -u fh@{name} says why): the key in use there stays")
        if waiting:
            time.sleep(0.02)
    return 0, f"instance {name} reloaded: {said}"


def _stop_unsupervised(name: str, timeout: float) -> tuple[int, str]:
    """No fh run for NAME: a writer that holds the segment without one (fh publish, a replay) is stopped
    the same way."""
    from . import shm

    try:
        with shm.Reader(name, wait_s=0.2) as r:
            st = r.writer_status()
    except shm.ShmError:
        return 0, f"instance {name} is not running (no pidfile in {', '.join(map(str, run_dirs()))}, no segment)"
    if st.state != "running":
        return 0, f"instance {name} is not running (its segment's writer pid {st.pid} is {st.state})"
    t0 = time.monotonic()
    _signal(st.pid, signal.SIGTERM)
    while time.monotonic() - t0 < timeout:
        try:
            os.waitpid(st.pid, os.WNOHANG)
        except ChildProcessError:
            pass
        if not pid_is(st.pid, None):
            return 0, (f"instance {name} stopped (pid {st.pid}, the segment's writer, not under fh run; in "
                       f"{time.monotonic() - t0:.1f} s)")
        time.sleep(0.05)
    _signal(st.pid, signal.SIGKILL)
    return 1, (f"instance {name}: the segment's writer pid {st.pid} (not under fh run) did not stop within "
               f"{timeout:g} s of SIGTERM; killed it with SIGKILL")


def _uptime(rec: dict) -> float | None:
    return round((time.time_ns() - rec["started_ns"]) / 1e9, 3) if rec.get("started_ns") else None


def _exit_base(rec: dict) -> dict:
    keys = ("name", "pid", "dataplane_pid", "config", "segment", "started_ns")
    return {k: rec.get(k) for k in keys}


# ---- fh status ------------------------------------------------------------------------------------------


def status(name: str, sample_s: float = 0.5) -> dict:
    """Everything `fh status` shows, as one dict (its --json). state: running, stopped or dead."""
    from . import shm

    path, rec, locked = lookup(name)
    rec = rec or {}
    out: dict = {"name": name, "state": None, "pid": None, "dataplane_pid": None, "supervised": locked,
                 "pidfile": str(path) if path else None, "config": rec.get("config"), "lines": rec.get("lines"),
                 "segment": rec.get("segment") or shm.segment_path(name), "uptime_s": None, "started_utc": None,
                 "writer": None, "events": None, "books": None, "messages": None, "anomalies": None, "rates": None,
                 "drops": None, "feed": None, "line_state": None, "last_exit": None, "notes": [],
                 "restart": rec.get("restart") if locked else None, "recorder_pid": rec.get("recorder_pid"),
                 "reload": rec.get("reload") if locked else None}
    sup = dp = None
    if locked:
        sup, dp = _live_pids(rec)
        out["pid"], out["dataplane_pid"] = sup, dp
        if sup is None and dp:
            out["notes"].append(f"fh run (pid {rec.get('pid')}) is gone; its data plane (pid {dp}) runs unsupervised")
    reader = None
    try:
        reader = shm.Reader(out["segment"], wait_s=0.2)
    except shm.ShmError as e:
        if locked:
            out["notes"].append(f"no segment yet ({e})")
    try:
        if reader is not None:
            _segment_status(reader, out, sample_s)
    finally:
        if reader is not None:
            reader.close()
    from .journal import status as journal_status

    out["journal"] = journal_status(name)
    from .replication_run import status as replication_status

    out["replication"] = replication_status(name, run_dirs())  # the role held and epoch, fh-replicate's state
    if out["replication"] is not None and locked and rec.get("replication"):
        out["replication"]["supervised"] = rec["replication"]
    w = out["writer"]
    if locked:
        out["state"] = "dead" if w and w["state"] == "dead" else "running"
        if w and w["state"] == "stopped":
            out["notes"].append("the data plane has stopped; fh run is finishing")
    elif path is not None:
        out["state"] = "dead"
        out["pid"] = rec.get("pid")
        out["notes"].append(f"fh run (pid {rec.get('pid')}) ended without cleaning up (killed?); {path} is stale")
    elif w is not None:
        out["state"] = w["state"]
        if w["state"] == "running":
            out["pid"] = w["pid"]
            out["notes"].append("the segment's writer does not run under fh run (fh publish, a replay?)")
    else:
        out["state"] = "stopped"
    if out["state"] != "running":
        ex = read_exit_record(name)
        if ex and path is not None and not locked and ex.get("started_ns") != rec.get("started_ns"):
            ex = None  # from an earlier run than the one whose stale pidfile is there
        if ex:
            out["restart"] = ex.get("restart")
            out["recorder_pid"] = out["recorder_pid"] or ex.get("recorder_pid")  # the ended run's fh record
            out["last_exit"] = {k: ex.get(k) for k in ("reason", "rc", "signal", "stopped_ns", "uptime_s", "pid")}
            out["last_exit"]["stopped_utc"] = _utc(ex.get("stopped_ns"))
            stats = ex.get("stats") or {}
            if stats:
                out["drops"] = {"net": stats.get("drops"), "nic_missed": (stats.get("nic") or {}).get("imissed"),
                                "nic_errors": (stats.get("nic") or {}).get("ierrors"),
                                "mold_gaps": (stats.get("mold") or {}).get("gaps")}
    if out["state"] == "stopped" and path is None and w is None and not out.get("last_exit"):
        out["notes"].append("nothing of this name on this host: no pidfile, exit record or segment (never run here "
                            "under this name? fh status --all lists the instances)")
    if out["state"] == "running" and out["drops"] is None:
        out["notes"].append("drop counters are in the data plane's final statistics only (fh status shows them "
                            "once it stops)")
    if out["lines"] is None and out["config"]:
        try:
            from . import config

            cfg = config.load(out["config"])
            out["lines"] = [{"name": l.name, "group": l.group, "port": l.port} for l in cfg.lines]
        except (ValueError, OSError):
            pass
    return out


def _segment_status(r, out: dict, sample_s: float) -> None:
    from . import shm

    st = r.writer_status()
    sb, behind = r.standby()
    out["writer"] = {"state": st.state, "pid": st.pid, "alive": st.alive, "heartbeat_age_s": round(st.heartbeat_age, 3),
                     "replaced": st.replaced, "standby": sb, "behind_msgs": behind}
    out["uptime_s"] = round(max(0.0, (time.time_ns() - r.start_ns) / 1e9), 3)
    out["started_utc"] = shm.utc_text(r.start_ns)
    if out["dataplane_pid"] is None and st.alive:
        out["dataplane_pid"] = st.pid
    try:
        c0, h0, t0 = r.stats(types=False), r.head, time.monotonic()
        status = r.books["status"]
        live, stale = int((status == shm.LIVE).sum()), int((status == shm.STALE).sum())
        out["books"] = {"count": live + stale, "live": live, "stale": stale}
        if sample_s > 0 and st.state == "running":
            time.sleep(sample_s)
            c1, h1, t1 = r.stats(types=False), r.head, time.monotonic()
            dt = t1 - t0
            out["rates"] = {"messages_per_s": round((c1.get("messages", 0) - c0.get("messages", 0)) / dt, 1),
                            "events_per_s": round((h1 - h0) / dt, 1), "over_s": round(dt, 3)}
            c0, h0 = c1, h1
        out["messages"] = c0.get("messages", 0)
        out["anomalies"] = {k: v for k, v in c0.items() if k != "messages"}
        dp = r.dataplane_stats()
        if dp["dataplane"]:
            m = dp["mold"]
            out["feed"] = {**dp["feed"], **{k: m.get(k, 0) for k in (
                "gaps", "recovered_lines", "recovered_retrans", "requests", "unrecoverable", "lost",
                "session_changes", "joined_at", "join_lost", "malformed", "bogus_session", "suspect")}}
            names = [l.get("name") for l in (out["lines"] or [])]
            out["line_state"] = [{"name": names[i] if i < len(names) else
                                  ("retransmission" if l["kind"] == "retransmission" else str(i)), **l}
                                 for i, l in enumerate(dp["lines"])]
        out["events"] = {"head": h0, "capacity": r.event_capacity}
    except shm.ShmError as e:
        out["notes"].append(str(e))
