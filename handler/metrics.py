"""`fh metrics`: an instance's counters and states in the Prometheus text exposition format (version 0.0.4),
over HTTP (GET /metrics) and as a node-exporter textfile (written atomically).

Everything comes from the shared-memory segment (handler.shm.Reader) and the pidfile (handler.supervise);
nothing is computed that the data plane does not publish. The data plane's section of the stats region
(fh/shm.h fh_shm_dp_stats_t; absent for engine-only writers such as fh publish) gives drops by cause,
MoldUDP64 counters, per-line figures, packets, bytes, and the rx->publish latency histogram, exported as the
Prometheus histogram fh_latency_seconds: its log-linear ns buckets (exact below 64 ns, 16 per power of two)
are summed into a fixed set of cumulative `le` bounds (one per power of two from 16 ns to about 1 s, each the
exact upper bound of a log-linear bucket, so no count is split), then +Inf (= _count). _sum is an
approximation: each bucket's count times its midpoint.

Labels follow the exporters' conventions: the instance is `fh_instance` (Prometheus adds its own `instance`,
the target), lines are labelled by their names (fh.toml's [[feed.lines]] name, else A, B, ... in --line
order; the retransmission server's replies `retransmission`). `fh_build_info` carries the version and the
segment layout; `fh_scrape_error` is 1 when the segment exists but cannot be read (its `cause` label says why).
"""

from __future__ import annotations

import math
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .process import line_names  # one naming of a data plane's lines, for metrics, fh stats/status and summaries

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_LISTEN = "127.0.0.1:9377"
WRITER_STATES = ("running", "stopped", "dead", "absent")


# ---- the text format -------------------------------------------------------------------------------------


@dataclass
class Family:
    """One metric family: a name (counters end in _total), a type, a help text and its samples."""

    name: str
    type: str  # counter, gauge
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> "Family":
        self.samples.append((labels, value))
        return self

    def add_suffixed(self, suffix: str, value: float, **labels: str) -> "Family":
        """A sample named NAME + suffix (a histogram's _bucket, _sum, _count)."""
        self.samples.append((labels, value, suffix))
        return self


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _value(v: float) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


def render(families: list[Family], base_labels: dict[str, str] | None = None) -> str:
    """The exposition text: per family a # HELP and a # TYPE line, then its samples. Families without
    samples are left out."""
    out = []
    base = base_labels or {}
    for f in families:
        if not f.samples:
            continue
        out.append(f"# HELP {f.name} {_escape_help(f.help)}")
        out.append(f"# TYPE {f.name} {f.type}")
        for labels, v, *suffix in f.samples:
            name = f.name + (suffix[0] if suffix else "")
            lab = {**base, **labels}
            text = ",".join(f'{k}="{_escape_label(str(x))}"' for k, x in lab.items())
            out.append(f"{name}{{{text}}} {_value(v)}" if text else f"{name} {_value(v)}")
    return "\n".join(out) + "\n"


# ---- the latency histogram ----------------------------------------------------------------------------------


LATENCY_MAX_LE_NS = 1 << 30  # about 1 s: beyond it +Inf


def _latency_le_buckets() -> list[int]:
    """Indices of the log-linear buckets (fh/shm.h) whose upper bounds are the `le` of fh_latency_seconds:
    one per power of two (the last sub-bucket of each), from 16 ns to LATENCY_MAX_LE_NS, about 27 bounds
    (fewer series per scrape than one per log-linear bucket, and still exact: no bucket is split)."""
    from .shm import LAT_BUCKETS, lat_upper_ns

    out = [15, 31, 63] + [i for i in range(64, LAT_BUCKETS - 1) if (i - 64) % 16 == 15]
    return [i for i in out if lat_upper_ns(i) <= LATENCY_MAX_LE_NS]


def latency_histogram(buckets) -> tuple[list[tuple[float, int]], float, int]:
    """From the log-linear ns counts: cumulative (le seconds, count) at LATENCY_LE_BUCKETS, the approximate
    sum in seconds (each count at its bucket's midpoint) and the count."""
    import numpy as np

    from .shm import LAT_BUCKETS, lat_lower_ns, lat_upper_ns

    b = np.asarray(buckets, dtype=np.uint64)
    cum = np.cumsum(b)
    le = [(lat_upper_ns(i) / 1e9, int(cum[i])) for i in _latency_le_buckets()]
    mids = np.array([(lat_lower_ns(i) + lat_upper_ns(i)) / 2 for i in range(LAT_BUCKETS)])
    return le, float((b.astype(np.float64) * mids).sum() / 1e9), int(cum[-1])


def dataplane_families(dp: dict, buckets, names: list[str] | None = None) -> list[Family]:
    """The data plane's section (handler.shm.Reader.dataplane_stats) as metric families."""
    fams = [Family("fh_packets_total", "counter", "frames the data plane received").add(dp["packets"]),
            Family("fh_bytes_total", "counter", "bytes of the frames the data plane received").add(dp["bytes"])]
    drops = Family("fh_drops_total", "counter", "frames the data plane dropped, by cause")
    for k, v in dp["drops"].items():
        drops.add(v, cause=k)
    mold = Family("fh_mold_total", "counter", "MoldUDP64 counters of the feed (datagrams, duplicates, gaps, ...)")
    nxt = Family("fh_mold_next_sequence", "gauge", "MoldUDP64 sequence of the next message the feed expects")
    for k, v in dp["mold"].items():
        if k == "next_seq":
            nxt.add(v)
        else:
            mold.add(v, counter=k)
    ldg = Family("fh_line_datagrams_total", "counter", "MoldUDP64 datagrams per line (--line order)")
    lwon = Family("fh_line_won_total", "counter", "messages first seen on the line (the arbitration it won)")
    lmsg = Family("fh_line_messages_total", "counter", "sequenced messages the line carried")
    ldup = Family("fh_line_duplicates_total", "counter", "messages already applied when they came on the line")
    llate = Family("fh_line_late_total", "counter", "messages below the line's own highest sequence")
    llost = Family("fh_line_lost_total", "counter", "sequences the line skipped when it jumped ahead")
    lstate = Family("fh_line_state", "gauge", "1 for the line's state (live, stale: silent too long, down)")
    lsilent = Family("fh_line_silent_seconds", "gauge", "time since the line's last datagram")
    for l, lname in zip(dp["lines"], line_names(dp["lines"], names)):
        lab = {"line": lname, "kind": l.get("kind", "feed")}
        ldg.add(l["datagrams"], **lab)
        lwon.add(l["won"], **lab)
        lmsg.add(l.get("messages", 0), **lab)
        ldup.add(l.get("duplicates", 0), **lab)
        llate.add(l.get("late", 0), **lab)
        llost.add(l.get("lost", 0), **lab)
        for st in ("live", "stale", "down"):
            lstate.add(int(l.get("state") == st), **lab, state=st)
        if l.get("silent_ms") is not None:
            lsilent.add(l["silent_ms"] / 1e3, **lab)
    feed = dp.get("feed") or {}
    fstate = Family("fh_feed_state", "gauge", "1 for the feed's state (waiting, live, recovering: a gap is "
                                              "open, stale: a gap was given up, ended)")
    for st in ("waiting", "live", "recovering", "stale", "ended"):
        fstate.add(int(feed.get("state") == st), state=st)
    held = Family("fh_feed_held_messages", "gauge", "messages in the hold-back buffer").add(feed.get("held", 0))
    outst = Family("fh_feed_outstanding_requests", "gauge", "retransmission requests in flight").add(
        feed.get("outstanding", 0))
    lat = Family("fh_latency_seconds", "histogram", "rx->publish latency per message (TSC at rx to TSC after "
                                                    "its datagram was applied)")
    le, total, count = latency_histogram(buckets)
    for bound, n in le:
        lat.add_suffixed("_bucket", n, le=repr(bound))
    lat.add_suffixed("_bucket", count, le="+Inf")
    lat.add_suffixed("_sum", total)
    lat.add_suffixed("_count", count)
    return fams + [drops, mold, nxt, ldg, lwon, lmsg, ldup, llate, llost, lstate, lsilent, fstate, held, outst, lat]


# ---- collecting --------------------------------------------------------------------------------------------


RESTART_STATES = ("none", "restoring", "recovered", "stale")


def restart_families(rs: dict | None) -> list[Family]:
    """The running instance's restart (fh run's pidfile record, handler/followers.py): its recovery state and
    how long it took."""
    st = Family("fh_restart_state", "gauge", "1 for the state of the last restart from snapshot + journal (none: "
                                             "the instance started empty; restoring: books stale until the lines "
                                             "deliver what came since; recovered; stale: a gap was given up)")
    for s in RESTART_STATES:
        st.add(int(s == (rs["state"] if rs else "none")), state=s)
    out = [st]
    if rs:
        t = Family("fh_restart_seconds", "gauge", "seconds from fh run's start to each point of the restart "
                                                  "(prepared: snapshot + journal applied; up: the data plane runs "
                                                  "with the restored books; recovered: every book live)")
        for phase, key in (("prepared", "prepare_s"), ("up", "up_s"), ("recovered", "recovered_s")):
            if rs.get(key) is not None:
                t.add(rs[key], phase=phase)
        out += [t, Family("fh_restart_journal_messages", "gauge", "journaled messages applied after the snapshot "
                                                                  "at the last restart").add(rs["journal_messages"])]
    return out


class Collector:
    """Reads one instance for each scrape; keeps its Reader between scrapes and joins again when the
    segment is replaced (a restart) or appears. Safe to call from several threads."""

    def __init__(self, name: str, line_names: list[str] | None = None):
        from . import shm

        self.line_names = line_names
        self.join_error: str | None = None
        self.target = name
        self.path = shm.segment_path(name)
        self.name = name if "/" not in name else Path(name).name.removeprefix("fh-")
        self._reader = None
        self._lock = threading.Lock()
        self.errors = 0

    def close(self) -> None:
        with self._lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    def _join(self):
        from . import shm

        r = self._reader
        if r is not None:
            try:
                if not r.writer_status().replaced:
                    return r
            except shm.ShmError:
                pass
            r.close()
            self._reader = None
        self.join_error = None
        try:
            self._reader = shm.Reader(self.path, wait_s=0.2)
        except shm.ShmError as e:
            self._reader = None
            if os.path.exists(self.path):  # there, but not readable: not the same as absent
                self.join_error = str(e)
        return self._reader

    def families(self) -> list[Family]:
        from . import shm, supervise

        with self._lock:
            fams: list[Family] = []
            _, prec, locked = supervise.lookup(self.name) if "/" not in self.target else (None, None, False)
            fams.append(Family("fh_supervisor_up", "gauge", "1 while fh run supervises the instance (it, or its "
                                                           "data plane, holds the pidfile's lock)").add(int(locked)))
            fams += restart_families((prec or {}).get("restart") if locked else None)
            r = self._join()
            up = Family("fh_writer_up", "gauge", "1 while the segment's writer (the data plane) runs and holds "
                                                 "its lock")
            state = Family("fh_writer_state", "gauge", "the segment writer's state: 1 for the current one "
                                                       "(absent: no segment)")
            fams += [up, state]
            err = Family("fh_scrape_error", "gauge", "1 when the segment exists but cannot be read (cause: why); "
                                                     "the other metrics are then missing, not zero")
            fams.append(err)
            if r is None:
                up.add(0)
                if self.join_error:
                    err.add(1, cause=self.join_error)
                    return fams
                err.add(0)
                for s in WRITER_STATES:
                    state.add(int(s == "absent"), state=s)
                return fams
            try:
                st = r.writer_status()
                counters = r.stats()
                rec = r.stats_copy()
                dp = r.dataplane_stats(rec)
                status = r.books["status"]
                live, stale = int((status == shm.LIVE).sum()), int((status == shm.STALE).sum())
                head = r.head
            except shm.ShmError as e:
                self.errors += 1
                print(f"fh metrics: {self.path}: {e}", file=sys.stderr)
                up.add(0)
                err.add(1, cause=str(e))
                fams.append(Family("fh_collect_errors_total", "counter", "scrapes that could not read the "
                                                                         "segment").add(self.errors))
                return fams
            err.add(0)
            up.add(int(st.state == "running"))
            fams.append(Family("fh_build_info", "gauge", "1, labelled with fh's version and the segment's layout "
                                                         "version").add(1, version=_version(),
                                                                        layout=str(_layout_version())))
            for s in WRITER_STATES:
                state.add(int(s == st.state), state=s)
            fams.append(Family("fh_writer_start_time_seconds", "gauge", "when the writer started (Unix time)")
                        .add(r.start_ns / 1e9))
            fams.append(Family("fh_heartbeat_age_seconds", "gauge", "seconds since the writer's last heartbeat")
                        .add(round(st.heartbeat_age, 6)))
            fams.append(Family("fh_event_head", "gauge", "sequence of the last event published to the ring")
                        .add(head))
            fams.append(Family("fh_event_capacity", "gauge", "event ring capacity").add(r.event_capacity))
            sb, behind = r.standby()
            if sb is not None:  # a standby's data plane: how current its books are against its own lines
                sbf = Family("fh_standby_state", "gauge", "a standby's books against its own lines: 1 for the current "
                                                          "state (current, behind, no-lines)")
                for s in ("current", "behind", "no-lines"):
                    sbf.add(int(s == sb), state=s)
                fams += [sbf, Family("fh_standby_behind_messages", "gauge", "messages a standby's lines delivered that "
                                                                             "its journal has not given yet")
                         .add(behind)]
            fams.append(Family("fh_books", "gauge", "instruments with a book (live or stale)").add(live + stale))
            fams.append(Family("fh_books_stale", "gauge", "books marked stale (a gap not yet recovered)").add(stale))
            fams.append(Family("fh_books_live", "gauge", "books that are live").add(live))
            fams.append(Family("fh_messages_applied_total", "counter", "ITCH messages the book engine applied")
                        .add(counters.get("messages", 0)))
            types = Family("fh_messages_total", "counter", "ITCH messages by message type")
            for k, v in sorted(counters.items()):
                if k.startswith("type_"):
                    types.add(v, type=k[5:])
            anomalies = Family("fh_anomalies_total", "counter", "messages the engine counted as anomalous, by "
                                                                "cause (docs/book-semantics.md)")
            for k, v in counters.items():
                if k != "messages" and not k.startswith("type_"):
                    anomalies.add(v, cause=k)
            fams += [types, anomalies]
            if dp["dataplane"]:
                fams += dataplane_families(dp, rec["dp"]["lat_bucket"], self.line_names)
            return fams

    def text(self) -> str:
        return render(self.families(), {"fh_instance": self.name})


def _layout_version() -> int:
    from ._native import lib

    return int(lib.FH_SHM_LAYOUT_VERSION)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fh")
    except PackageNotFoundError:
        return "unknown"


LANDING = """<!doctype html>
<html><head><title>fh metrics</title></head>
<body><h1>fh metrics: {name}</h1>
<p>The instance's counters, states and rx&rarr;publish latency in the Prometheus text format:
<a href="/metrics">/metrics</a>.</p>
<p>Scrape it with a job whose target is this address; the instance is labelled <code>fh_instance</code>.</p>
</body></html>
"""


# ---- outputs ---------------------------------------------------------------------------------------------


def write_textfile(path: str | os.PathLike, text: str) -> None:
    """Write text to path atomically: a temporary file in the same directory, flushed, then renamed over
    it (node-exporter's textfile collector must never read half a file)."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--listen {text!r}: expected HOST:PORT, e.g. {DEFAULT_LISTEN} (or :9377 for every "
                         f"address)")
    return host.strip("[]") or "0.0.0.0", int(port)


def make_server(collector: Collector, listen: str) -> ThreadingHTTPServer:
    """An HTTP server answering GET /metrics (and 404 elsewhere); serve_forever() it, or use .server_address."""
    host, port = parse_listen(listen)

    class Handler(BaseHTTPRequestHandler):
        server_version = "fh-metrics"

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path == "/":
                body = LANDING.format(name=collector.name).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
            elif path != "/metrics":
                body = b"not found: the metrics are at /metrics\n"
                self.send_response(404)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
            else:
                body = collector.text().encode()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):  # no access log: Prometheus scrapes every few seconds
            pass

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        daemon_threads = True
        allow_reuse_address = True

    return Server((host, port), Handler)


def serve(name: str, listen: str | None, textfile: str | None, once: bool, interval: float,
          line_names: list[str] | None = None) -> int:
    collector = Collector(name, line_names)
    try:
        if once:
            text = collector.text()
            if textfile:
                write_textfile(textfile, text)
            else:
                sys.stdout.write(text)
            return 0
        server = None
        if listen:
            server = make_server(collector, listen)
            host, port = server.server_address[:2]
            print(f"fh metrics: {collector.name}: serving http://{host}:{port}/metrics", file=sys.stderr, flush=True)
            threading.Thread(target=server.serve_forever, name="fh-metrics-http", daemon=True).start()
        if textfile:
            print(f"fh metrics: {collector.name}: writing {textfile} every {interval:g} s", file=sys.stderr,
                  flush=True)
        def on_term(signum, frame):
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, on_term)
        try:
            while True:
                if textfile:
                    write_textfile(textfile, collector.text())
                time.sleep(interval)
        except KeyboardInterrupt:
            return 0
        finally:
            if server is not None:
                server.shutdown()
                server.server_close()
    finally:
        collector.close()
