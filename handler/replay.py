"""`fh replay` and `fh verify`: a pcap through the real DPDK data plane, its books read back from shared
memory, and the reference model's books for the same datagrams.

Two ways in: `replay` runs the data plane on net_pcap, which reads the capture at top speed (deterministic;
`loop` feeds it the capture K times through a FIFO); `replay_live` paces it instead: a sender
(handler.net.sender) in a network namespace sends the frames over a veth pair to the data plane on
net_af_packet, as a feed would arrive."""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

from .process import (ROOT, Dataplane, DataplaneError, _term_as_interrupt, dataplane_cmd, other_cpu, poll_core,
                      remove_segment, with_parent)


def pcap_lines(path: str | Path) -> list[tuple[str, int]]:
    """The (destination, port) of each UDP flow of a capture, in order of first appearance."""
    return pcap_survey(path)[0]


def pcap_survey(path: str | Path) -> tuple[list[tuple[str, int]], dict[str, int]]:
    """pcap_lines and the reader's counters (handler/net/pcapfile.py: frames, datagrams, truncated_file, ...) in
    one pass: what a replay's data plane cannot tell (net_pcap stops at a cut-off last record as at the end)."""
    from .net.pcapfile import PcapReader

    seen: dict[tuple[str, int], None] = {}
    r = PcapReader(path)
    for d in r.datagrams():
        seen.setdefault((d.dst, d.dport), None)
    return list(seen), {**r.counters, "bad_record_at": r.bad_record_at}


def capture_cut(path: str | Path, counters: dict, what: str) -> str | None:
    """What a command says of a capture whose last record is cut off, or whose record header is damaged (None: it
    is whole), from PcapReader's counters (and `bad_record_at`): `PATH: truncated: ...; {what}`, `what` being what
    it did with the frames before it."""
    n = counters.get("frames", 0)
    frames = f"{n:,} whole frame{'' if n == 1 else 's'}"
    if counters.get("bad_record"):
        return (f"{path}: damaged: the record header at byte {counters.get('bad_record_at') or 0:,} claims more than "
                f"a frame can hold, and the frames after it cannot be found (after {frames}); {what}")
    if not counters.get("truncated_file"):
        return None
    return f"{path}: truncated: its last record is cut off (after {frames}); {what}"


def eal_args(name: str, vdev: str, core: int | None = None, memory_mb: int = 256, huge: bool = False) -> list[str]:
    """EAL's arguments for a lab's data plane on virtual devices: memory from ordinary pages (--no-huge), or with
    huge from hugepages as fh run takes it with memory.hugepages = true (--in-memory: no file left behind)."""
    mem = ["--in-memory"] if huge else ["--no-shconf", "--no-huge"]
    return ["--no-pci", *mem, "-m", str(memory_mb), "--file-prefix", f"fh-{name}",
            "-l", str(poll_core() if core is None else core), "--log-level", "lib.eal:error", "--no-telemetry",
            "--log-level", "pmd.net.pcap:error", "--vdev", vdev]


def segment_books(path: str, depth: int | None = None) -> list[dict]:
    """The canonical dump (docs/book-semantics.md) of every book in a segment."""
    from .shm import Reader

    r = Reader(path)
    try:
        return r.dump(depth)
    finally:
        r.close()


def refuse_if_held(segment: str) -> None:
    """A replay never touches a segment another writer holds (an instance of that name running): it says so
    before starting, so that nothing of the other instance is removed afterwards."""
    if not os.path.exists(segment):
        return
    from .shm import Reader, ShmError

    try:
        r = Reader(segment)
    except ShmError:
        return  # not a readable segment: the data plane formats it anew, or says why not
    try:
        st = r.writer_status()
    finally:
        r.close()
    if st.state == "running":
        raise DataplaneError(f"segment {segment} is held by another writer (pid {st.pid}): stop that instance "
                             f"(kill {st.pid}) or give this replay another --name")


def pcap_extent(path: str | Path) -> tuple[int, int]:
    """(whole records, offset just past the last whole one) of a classic pcap: a record cut off at the end is
    left out, as PcapReader leaves it."""
    from .net.pcapfile import PcapReader

    r = PcapReader(path)
    fmt = ("<" if r.byteorder == "little" else ">") + "8xI4x"
    rec = struct.Struct(fmt)
    size = os.path.getsize(path)
    n, pos = 0, 24
    with open(path, "rb") as f:
        while True:
            f.seek(pos)
            h = f.read(16)
            if len(h) < 16:
                break
            (incl,) = rec.unpack(h)
            if pos + 16 + incl > size:
                break
            pos += 16 + incl
            n += 1
    return n, pos


class _FifoFeed:
    """Writes a capture `loop` times, as one capture, into a FIFO that net_pcap reads: a finite loop at top
    speed, with no copy on disk. The writer opens the FIFO once the data plane has (and gives up if the data
    plane exits first); `done` counts the bytes written, for progress."""

    def __init__(self, fifo: str, pcap: str, loop: int, end: int, dp: "Dataplane"):
        self.fifo, self.pcap, self.loop, self.end, self.dp = fifo, pcap, loop, end, dp
        self.done = 0
        self.error: BaseException | None = None
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self) -> None:
        import errno

        try:
            while True:
                try:
                    fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
                    break
                except OSError as e:
                    if e.errno != errno.ENXIO or self.dp.p.poll() is not None:
                        return
                    time.sleep(0.005)
            os.set_blocking(fd, True)
            try:
                with open(self.pcap, "rb") as f:
                    self._write(fd, f.read(24))
                    for _ in range(self.loop):
                        f.seek(24)
                        left = self.end - 24
                        while left > 0:
                            chunk = f.read(min(left, 1 << 20))
                            if not chunk:
                                break
                            left -= len(chunk)
                            self._write(fd, chunk)
            finally:
                os.close(fd)
        except BrokenPipeError:
            pass  # the data plane went away: its own error says why
        except BaseException as e:  # noqa: BLE001 - reported by the caller
            self.error = e

    def _write(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
            self.done += n


def _fd_position(pid: int, path: str, cache: dict) -> int | None:
    """Where process pid has read file path up to (its file offset), from /proc: net_pcap's progress."""
    fd = cache.get("fd")
    try:
        if fd is None:
            for e in os.scandir(f"/proc/{pid}/fd"):
                try:
                    if os.readlink(e.path) == path:
                        cache["fd"] = fd = e.name
                        break
                except OSError:
                    continue
            else:
                return None
        with open(f"/proc/{pid}/fdinfo/{fd}") as f:
            for line in f:
                if line.startswith("pos:"):
                    return int(line.split()[1])
    except OSError:
        cache.pop("fd", None)
    return None


def replay(pcap: str | Path, *, name: str | None = None, depth: int | None = None, want_books: bool = False,
           lines: list[tuple[str, int]] | None = None, loop: int = 1, progress=None,
           timeout: float | None = None, extra: list[str] | tuple = (),
           keep_segment: bool = False, upto: int | None = None) -> tuple[dict, list[dict] | None]:
    """Replay a capture through the data plane on net_pcap at top speed; return (statistics, books or None).
    loop > 1 sends the capture that many times in a row (through a FIFO); progress(done, total, elapsed_s),
    in frames, is called about ten times a second. extra: more fh-dataplane arguments. keep_segment leaves the
    segment /dev/shm/fh-NAME after a replay that succeeded (readers open it by name). upto: the byte offset of a
    damaged record header (pcap_survey's bad_record_at): only the frames before it are replayed, from a copy of
    them (net_pcap's libpcap reads on past such a header, into frames the reference model and fh decode never
    see)."""
    if loop < 1:
        raise DataplaneError(f"loop {loop}: must be at least 1")
    pcap = str(Path(pcap).resolve())
    from .segments import instance_name

    name = instance_name(name if name is not None else f"replay-{uuid.uuid4().hex[:8]}")
    segment = f"/dev/shm/fh-{name}"
    refuse_if_held(segment)
    lines = lines if lines is not None else pcap_lines(pcap)
    tmp = tempfile.mkdtemp(prefix="fh-loop-") if loop > 1 or upto is not None else None
    given = pcap
    if upto is not None:
        pcap = _whole_prefix(pcap, upto, os.path.join(tmp, "whole.pcap"))
    frames, end = pcap_extent(pcap) if (loop > 1 or progress is not None) else (0, 0)
    total = frames * loop
    source = os.path.join(tmp, "loop.pcap") if loop > 1 else pcap
    t0 = time.perf_counter()
    dp = feed = None
    kept = False
    try:
        if loop > 1:
            os.mkfifo(source, 0o600)
        dp = Dataplane(dataplane_cmd(eal_args(name, f"net_pcap0,rx_pcap={source}"), segment, lines,
                                     extra=["--name", name, *extra]))
        if loop > 1:
            feed = _FifoFeed(source, pcap, loop, end, dp)
        fdcache: dict = {}

        def tick() -> None:
            if feed is not None:
                frac = feed.done / max(1, 24 + loop * (end - 24))
            else:
                pos = _fd_position(dp.p.pid, pcap, fdcache)
                frac = (pos or 0) / max(1, end)
            progress(min(total, round(frac * total)), total, time.perf_counter() - t0)

        stats = dp.wait(timeout, tick if progress is not None else None)
        if feed is not None and feed.error is not None:
            raise DataplaneError(f"feeding {given} to net_pcap: {feed.error}")
        if progress is not None:
            progress(total, total, time.perf_counter() - t0)
        stats["wall_s"] = round(time.perf_counter() - t0, 3)
        stats["lines_listened"] = [f"{d}:{p}" for d, p in lines]
        if loop > 1:
            stats["loop"] = loop
        books = segment_books(segment, depth) if want_books else None
        kept = keep_segment
    finally:
        if dp is not None:
            dp.close()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        if not kept:
            remove_segment(segment)
    return stats, books


def _settle(segment: str, dp: Dataplane, quiet_s: float = 0.25, limit_s: float = 10.0) -> None:
    """Wait until the data plane has taken what is in its ring. It publishes its counters only when a poll
    finds the ring empty (at most every 0.1 s), each publish moving the stats seqlock on by 2: settled is two
    publishes, and quiet_s, with the message count unchanged."""
    from .shm import Reader, ShmError

    t_end = time.monotonic() + limit_s
    try:
        r = Reader(segment)
    except ShmError:
        time.sleep(quiet_s)
        return
    try:
        last = seq_then = None
        since = time.monotonic()
        while time.monotonic() < t_end and dp.p.poll() is None:
            seq = int(r.stats_region["seq"])
            try:
                msgs = r.stats(types=False).get("messages")
            except ShmError:
                msgs = None
            if msgs != last or seq_then is None:
                last, seq_then, since = msgs, seq, time.monotonic()
            elif time.monotonic() - since >= quiet_s and (seq - seq_then) & 0xFFFFFFFF >= 4:
                return
            time.sleep(0.05)
    finally:
        r.close()


def _whole_prefix(pcap: str, upto: int, out: str) -> str:
    """A copy of the first `upto` bytes of pcap (its file header and the whole records before a damaged one) at out."""
    with open(pcap, "rb") as src, open(out, "wb") as dst:
        left = upto
        while left > 0:
            chunk = src.read(min(left, 1 << 20))
            if not chunk:
                break
            dst.write(chunk)
            left -= len(chunk)
    return out


def replay_live(pcap: str | Path, pace, *, loop: int = 1, name: str | None = None, depth: int | None = None,
                want_books: bool = False, lines: list[tuple[str, int]] | None = None, progress=None,
                lab_id: str | None = None, ring_frames: int = 4096, realtime: bool = False,
                timeout: float | None = None, plan=None, prefix: list[str] | tuple = (),
                keep_segment: bool = False) -> tuple[dict, list[dict] | None]:
    """Replay a capture live: a sender in a network namespace sends its frames, paced (sender.Pace), over a
    veth pair to the data plane on net_af_packet. Returns (statistics, books or None); the statistics carry
    the sender's summary ("sender") and what the kernel counted on the data plane's veth end ("link").
    realtime runs the sender under SCHED_FIFO (see handler.net.sender). timeout bounds the wait for the data plane
    to stop once the sender is done. plan(frames, seconds), if given, hears what is about to be sent and how
    long the schedule lasts, before anything is set up. prefix: a command the data plane is started under
    (handler.privilege.drop_prefix: as another user, with fewer capabilities). keep_segment: as in replay."""
    from .net import sender as snd

    if loop < 1:
        raise DataplaneError(f"loop {loop}: must be at least 1")
    pcap = str(Path(pcap).resolve())
    cap = snd.read_frames(pcap)  # refuses what cannot be sent before anything is set up
    lines = lines if lines is not None else pcap_lines(pcap)
    from .segments import instance_name

    name = instance_name(name if name is not None else f"live-{uuid.uuid4().hex[:8]}")
    segment = f"/dev/shm/fh-{name}"
    refuse_if_held(segment)
    biggest = max((len(f) for f in cap.frames), default=0)
    if plan is not None:
        plan(len(cap.frames) * loop, snd.planned_s(*snd.schedule(cap, pace), loop))
    lab = snd.Lab(lab_id, mtu=max(1500, biggest - 14))
    del cap
    dp = sp = None
    kept = False
    t0 = time.perf_counter()
    old_term = None
    if threading.current_thread() is threading.main_thread():  # SIGTERM, like ^C, tears the lab down
        old_term = signal.signal(signal.SIGTERM, _term_as_interrupt)
    try:
        lab.up()
        before = lab.link_counters()
        vdev = f"net_af_packet0,iface={lab.dp_if},framecnt={ring_frames}"
        dp = Dataplane([*prefix, *dataplane_cmd(eal_args(name, vdev), segment, lines, exit_idle_ms=0,
                                                extra=["--name", name])])
        dp.wait_running()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        sp = subprocess.Popen(lab.sender_argv(pcap, pace, loop, other_cpu(), realtime), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                              preexec_fn=with_parent(signal.SIGTERM))

        def check_dataplane() -> None:  # held with exit_idle_ms 0, it ends only on an error, which says why
            if dp.p.poll() is not None:
                sp.kill()
                dp.wait(5)
                raise DataplaneError(f"fh-dataplane exited while the sender ran: {' | '.join(dp.err[-3:])}")

        out = snd.Output(sp.stdout)
        for msg in out:
            check_dataplane()
            if progress is not None:
                progress(msg["sent"], msg["total"], msg["elapsed_s"], msg.get("eta_s"))
        check_dataplane()
        summary = out.summary
        err = sp.stderr.read()
        if sp.wait() != 0 or summary is None:
            raise snd.SenderError(err.strip().splitlines()[-1] if err.strip() else f"the sender exited {sp.returncode}")
        _settle(segment, dp)
        stats = dp.stop(timeout or 30.0)
        after = lab.link_counters()
        stats["wall_s"] = round(time.perf_counter() - t0, 3)
        stats["lines_listened"] = [f"{d}:{p}" for d, p in lines]
        stats["sender"] = summary
        link = {k: after[k] - before[k] for k in after}
        # Every frame the veth took in from the sender's side, and every one the root kernel sent out on it,
        # reaches the data plane's packet socket, except those the data plane sent itself (IGMP joins, which
        # bypass the taps). What it did not count was lost in the kernel's packet ring: net_af_packet does not
        # report that as imissed, so it is worked out here.
        seen = link["rx_packets"] + link["tx_packets"] - stats["nic"].get("opackets", 0)
        stats["link"] = {"iface": lab.dp_if, **link, "unseen": max(0, seen - stats["packets"])}
        books = segment_books(segment, depth) if want_books else None
        kept = keep_segment
    finally:
        if sp is not None and sp.poll() is None:
            sp.kill()
            sp.wait()
        if dp is not None:
            dp.close()
        lab.down()
        if not kept:
            remove_segment(segment)
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    return stats, books


def mold_defaults() -> dict[str, int]:
    """The sequencer's integrity defaults, read from the C core (fh_mold_cfg_defaults), which fh-dataplane's
    --max-ahead / --confirm / --recover-max defaults also come from: one source."""
    from ._native import ffi, lib

    c = ffi.new("fh_mold_cfg_t *")
    lib.fh_mold_cfg_defaults(c, 1)
    return {"max_ahead": int(c.max_ahead), "confirm": int(c.confirm), "recover_max": int(c.recover_max)}


JUMP_NEAR = 1 << 16  # FH_MOLD_JUMP_NEAR: a jump corroborates another this close (a datagram's reach)


def _framed(p: bytes, count: int) -> bool:
    """The data plane's framing rule: `count` blocks fill the datagram exactly, none is empty, and each block of
    a known ITCH type has that type's length (fh/mold.h, cfg.msg_len)."""
    from .reference import MESSAGE_LENGTHS

    pos = 20
    for _ in range(count):
        if len(p) - pos < 2:
            return False
        n = int.from_bytes(p[pos:pos + 2], "big")
        if n > len(p) - pos - 2 or n == 0:
            return False
        if MESSAGE_LENGTHS.get(chr(p[pos + 2]), n) != n:
            return False
        pos += 2 + n
    return pos == len(p)


class Sequencer:
    """The reference's MoldUDP64 sequencing, written for clarity rather than speed, with the data plane's rules
    (docs/line-reliability.md): a datagram is used only when its whole framing is valid; the first copy of
    each sequence wins across lines and a session's messages are applied in sequence order (a late copy fills
    its gap); a session is believed only on evidence (the first one at once; another after an end of session
    of the current one, on two lines, or after `confirm` datagrams); every session starts at 1, so a first
    datagram above 1 is a late join; a sequence more than `max_ahead` beyond the session's highest is suspect
    until confirmed the same way; sequence 0 is applied unsequenced, in arrival order. A sequence no line
    carried is missing: the data plane gives it up (no retransmission from a capture) and marks every book
    stale. Unlike the data plane it waits for the end of the capture rather than a timer before giving a hole
    up, so for a capture whose holes are filled within --gap-wait-us both end with the same books."""

    def __init__(self, ref, max_ahead: int | None = None, confirm: int | None = None):
        d = mold_defaults()
        self.ref = ref
        self.max_ahead = d["max_ahead"] if max_ahead is None else max_ahead
        self.confirm = d["confirm"] if confirm is None else confirm
        self.session: bytes | None = None
        self.prev: bytes | None = None
        self.ended = False
        self.cand: bytes | None = None
        self.cand_lines, self.cand_count = 0, 0
        self.jump_seq, self.jump_lines, self.jump_count = 0, 0, 0
        self.got: dict[int, bytes] = {}
        self.known_end = 1  # one past the highest sequence known to exist
        self.fresh = True
        self.joined_at = 0
        self.provisional = False  # the first session, taken at once, until a second line or `confirm` datagrams
        self.sess_lines, self.sess_count = 0, 0
        self.replaced_provisional = False
        self.counters = dict.fromkeys(("malformed", "unsequenced", "bogus_session", "suspect", "old_session",
                                       "session_changes", "lost", "applied"), 0)
        self.missing: list[tuple[int, int]] = []  # (first, last) sequence ranges never carried, every session
        self.late_joins: list[tuple[int, int]] = []  # (joined_at, messages of 1..joined_at-1 missing)

    def _confirmed(self, lines: int, count: int) -> bool:
        return not self.confirm or bin(lines).count("1") >= 2 or count >= self.confirm

    def _flush(self) -> None:
        """Apply the current session's messages in order; note what it is missing."""
        if self.session is None:
            return
        for seq in sorted(self.got):
            self.ref.apply(self.got[seq])
        self.counters["applied"] += len(self.got)
        lost = self.known_end - 1 - len(self.got)
        self.counters["lost"] += lost
        if lost:
            keys = sorted(self.got)
            prev = 0
            for k in keys + [self.known_end]:
                if k > prev + 1:
                    self.missing.append((prev + 1, k - 1))
                prev = k
        if self.joined_at > 1:
            self.late_joins.append((self.joined_at, self.joined_at - 1 - sum(1 for k in self.got if k < self.joined_at)))
        self.got = {}

    def _adopt(self, sess: bytes) -> None:
        if self.session is not None:
            self._flush()
            self.prev = self.session
            self.counters["session_changes"] += 1
        self.session, self.ended, self.cand_count, self.jump_count = sess, False, 0, 0
        self.known_end, self.fresh, self.joined_at = 1, True, 0

    def _suspect(self, seq: int, bit: int) -> bool:
        if not (self.max_ahead and seq > self.known_end and seq - self.known_end > self.max_ahead):
            return False
        if self.jump_count and abs(seq - self.jump_seq) <= JUMP_NEAR:
            self.jump_lines |= bit
            self.jump_count += 1
        else:
            self.jump_seq, self.jump_lines, self.jump_count = seq, bit, 1
        if self._confirmed(self.jump_lines, self.jump_count):
            self.jump_count = 0
            return False
        self.counters["suspect"] += 1
        return True

    def datagram(self, p: bytes, line: int) -> None:
        bit = 1 << line if line < 16 else 0
        if len(p) < 20:
            self.counters["malformed"] += 1
            return
        sess, seq, count = p[:10], int.from_bytes(p[10:18], "big"), int.from_bytes(p[18:20], "big")
        control = count in (0, 0xFFFF)
        if (seq >> 62) or not (len(p) == 20 if control else _framed(p, count)):
            self.counters["malformed"] += 1
            return
        from .reference import iter_mold

        msgs = [] if control else iter_mold(p).messages
        if not seq:
            for m in msgs:
                self.ref.apply(m)
            self.counters["unsequenced"] += len(msgs)
            return
        if sess != self.session:
            if self.session is None:
                self._adopt(sess)
                self.provisional, self.sess_lines, self.sess_count = True, bit, 0
            elif sess == self.prev:
                self.counters["old_session"] += 1
                return
            else:
                if self.cand_count and self.cand == sess:
                    self.cand_lines |= bit
                    self.cand_count += 1
                else:
                    self.cand, self.cand_lines, self.cand_count = sess, bit, 1
                if not (self.ended or self._confirmed(self.cand_lines, self.cand_count)):
                    self.counters["bogus_session"] += 1
                    return
                if self.provisional:  # the first session was a stray's: the books are stale from here
                    self.replaced_provisional = True
                self._adopt(sess)
                self.provisional = False
        if self.provisional:
            self.sess_lines |= bit
            self.sess_count += 1
            if self._confirmed(self.sess_lines, self.sess_count):
                self.provisional = False
        if self._suspect(seq, bit):
            return
        if self.fresh:
            self.fresh = False
            if seq > 1:
                self.joined_at = seq
        if control:
            self.known_end = max(self.known_end, seq)
            if count == 0xFFFF:
                self.ended, self.provisional = True, False  # a session that ends was one
            return
        for i, m in enumerate(msgs):
            self.got.setdefault(seq + i, m)
        self.known_end = max(self.known_end, seq + count)

    def finish(self) -> dict:
        self._flush()
        return {**self.counters, "missing": self.missing, "late_joins": self.late_joins,
                "replaced_provisional": self.replaced_provisional,
                "stale": bool(self.counters["lost"]) or self.replaced_provisional}


def reference_books(pcap: str | Path, lines: list[tuple[str, int]] | None = None,
                    depth: int | None = None, max_ahead: int | None = None,
                    confirm: int | None = None) -> tuple[list[dict], dict]:
    """The reference model's books for the datagrams the data plane would take, sequenced by the data plane's
    rules (Sequencer). Returns (books, counters): the reference book's counters plus "sequencing", the
    Sequencer's (malformed, bogus_session, suspect, lost, missing ranges, late joins, stale), and the capture's
    "pcap_frames" and "pcap_truncated_file" (1: its last record is cut off)."""
    from .net.pcapfile import PcapReader
    from .reference import ReferenceBook

    lines = list(lines if lines is not None else pcap_lines(pcap))
    index = {k: i for i, k in enumerate(lines)}
    ref = ReferenceBook()
    seq = Sequencer(ref, max_ahead, confirm)
    reader = PcapReader(pcap)
    for d in reader.datagrams():
        line = index.get((d.dst, d.dport))
        if line is not None:
            seq.datagram(bytes(d.payload), line)
    counters = dict(ref.counters)
    counters["sequencing"] = seq.finish()
    counters["pcap_frames"] = reader.counters["frames"]
    counters["pcap_truncated_file"] = reader.counters["truncated_file"]
    return ref.books(depth), counters


def stale_reason(seqinfo: dict) -> str:
    """One line: why the reference says the books must be stale ("" when they need not be)."""
    if not seqinfo.get("stale"):
        return ""
    parts = ["the first session was replaced before it was confirmed"] if seqinfo.get("replaced_provisional") else []
    parts += [f"joined late at {j}; 1..{j - 1} missing" for j, n in seqinfo["late_joins"] if n]
    rest = seqinfo["lost"] - sum(n for _, n in seqinfo["late_joins"])
    if rest:
        ranges = [r for r in seqinfo["missing"]][:3]
        parts.append(f"{rest} message(s) no line carried ("
                     + ", ".join(f"{a}..{b}" if a != b else str(a) for a, b in ranges)
                     + (", ..." if len(seqinfo["missing"]) > 3 else "") + ")")
    return "; ".join(parts)


def diff_books(got: list[dict], want: list[dict], limit: int = 5) -> list[str]:
    """Human-readable first differences between two dumps."""
    g = {b["locate"]: b for b in got}
    w = {b["locate"]: b for b in want}
    out = []
    for loc in sorted(set(g) | set(w)):
        if g.get(loc) != w.get(loc):
            a, b = g.get(loc), w.get(loc)
            if a is None or b is None:
                out.append(f"locate {loc}: {'missing from the data plane' if a is None else 'not in the reference'}")
            else:
                for side in ("bids", "asks"):
                    for i, (x, y) in enumerate(zip(a[side] + [None] * 99, b[side] + [None] * 99)):
                        if x != y:
                            out.append(f"locate {loc} ({b['symbol']}) {side}[{i}]: data plane {x}, reference {y}")
                            break
                        if x is None:
                            break
            if len(out) >= limit:
                break
    return out

