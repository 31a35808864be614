"""`fh metrics`: the Prometheus text format (0.0.4) over HTTP and as a node-exporter textfile, checked line
by line against what handler.shm.Reader reads from the same segment (`fh publish --hold` is the writer)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import ROOT, fh, fh_popen, publisher
from handler import metrics, shm

pytestmark = pytest.mark.slow  # each test runs fh publish and fh metrics processes

DAY = ROOT / "pcaps" / "synth-100k.itch"

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
VALUE = r"(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]Inf|NaN)"
SAMPLE = re.compile(rf"^({NAME})(?:\{{((?:{LABEL})(?:,{LABEL})*)?\}})? ({VALUE})(?: -?\d+)?$")
HELP = re.compile(rf"^# HELP ({NAME}) (.*)$")
TYPE = re.compile(rf"^# TYPE ({NAME}) (counter|gauge|histogram|summary|untyped)$")


def parse(text: str) -> dict[tuple[str, tuple], float]:
    """Parse an exposition line by line, asserting the format: every line a HELP, a TYPE or a sample; each
    family's HELP and TYPE once, before its samples, which follow together; counters end in _total; no
    sample twice. Returns {(name, sorted labels): value}."""
    assert text.endswith("\n") and "\n\n" not in text
    helped, typed, done, out = set(), {}, set(), {}
    current = None
    for i, line in enumerate(text[:-1].split("\n"), 1):
        if line.startswith("# HELP "):
            m = HELP.match(line)
            assert m, f"line {i}: malformed HELP: {line!r}"
            assert m[1] not in helped and m[1] not in done, f"line {i}: second HELP for {m[1]}"
            helped.add(m[1])
            if current and current != m[1]:
                done.add(current)
            current = m[1]
            continue
        if line.startswith("# TYPE "):
            m = TYPE.match(line)
            assert m, f"line {i}: malformed TYPE: {line!r}"
            assert m[1] not in typed and m[1] == current, f"line {i}: TYPE {m[1]} out of place"
            typed[m[1]] = m[2]
            if m[2] == "counter":
                assert m[1].endswith("_total"), f"line {i}: counter {m[1]} without _total"
            continue
        assert not line.startswith("#"), f"line {i}: unexpected comment {line!r}"
        m = SAMPLE.match(line)
        assert m, f"line {i}: malformed sample: {line!r}"
        name = m[1]
        assert name == current and name in typed, f"line {i}: sample {name} before its HELP/TYPE or apart"
        labels = tuple(sorted(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m[2] or "")))
        key = (name, labels)
        assert key not in out, f"line {i}: duplicate sample {line!r}"
        out[key] = float(m[3])
    return out


def value(samples: dict, name: str, **labels) -> float:
    for (n, lab), v in samples.items():
        d = dict(lab)
        if n == name and all(d.get(k) == x for k, x in labels.items()):
            return v
    raise KeyError(f"{name} {labels}")


def _unique() -> str:
    return f"mt{os.getpid() % 100000}{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def live():
    name = _unique()
    with publisher(DAY, name=name) as (_, proc):
        yield name, proc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def metrics_server(name: str):
    """`fh metrics --name NAME --listen 127.0.0.1:PORT` in a subprocess; yields its base URL once it answers."""
    port = _free_port()
    proc = fh_popen("metrics", "--name", name, "--listen", f"127.0.0.1:{port}", stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stderr.read()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "fh metrics did not listen"
                time.sleep(0.05)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stderr.close()


def check_against_reader(samples: dict, name: str) -> None:
    with shm.Reader(name) as r:
        counters = r.stats()
        st = r.writer_status()
        status = r.books["status"]
        head = r.head
        for (n, lab) in samples:
            assert dict(lab).get("fh_instance") == name and "instance" not in dict(lab), n
        assert value(samples, "fh_writer_up") == 1 and st.state == "running"
        assert value(samples, "fh_writer_state", state="running") == 1
        assert sum(value(samples, "fh_writer_state", state=s) for s in metrics.WRITER_STATES) == 1
        assert value(samples, "fh_messages_applied_total") == counters["messages"]
        types = {k[5:]: v for k, v in counters.items() if k.startswith("type_")}
        assert {dict(lab)["type"]: v for (n, lab), v in samples.items() if n == "fh_messages_total"} == types
        causes = {k: v for k, v in counters.items() if k != "messages" and not k.startswith("type_")}
        assert {dict(lab)["cause"]: v for (n, lab), v in samples.items() if n == "fh_anomalies_total"} == causes
        assert value(samples, "fh_event_head") == head
        assert value(samples, "fh_event_capacity") == r.event_capacity
        assert value(samples, "fh_books") == int((status != shm.EMPTY).sum())
        assert value(samples, "fh_books_stale") == int((status == shm.STALE).sum())
        assert value(samples, "fh_books_live") == int((status == shm.LIVE).sum())
        assert abs(value(samples, "fh_writer_start_time_seconds") - r.start_ns / 1e9) < 1e-3
        assert 0 <= value(samples, "fh_heartbeat_age_seconds") < 5
        assert value(samples, "fh_supervisor_up") == 0  # fh publish, not fh run


def test_scrape_over_http(live, run_dir):
    name, _ = live
    with metrics_server(name) as url:
        with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            text = resp.read().decode()
        samples = parse(text)
        check_against_reader(samples, name)
        assert value(samples, "fh_messages_applied_total") > 0 and value(samples, "fh_messages_total", type="A") > 0
        with urllib.request.urlopen(url + "/", timeout=10) as resp:  # a landing page, as exporters have
            assert resp.status == 200 and 'href="/metrics"' in resp.read().decode()
        assert value(samples, "fh_scrape_error") == 0
        build = [dict(lab) for (n, lab) in samples if n == "fh_build_info"]
        assert len(build) == 1 and build[0]["layout"].isdigit() and build[0]["version"]
        for path in ("/metricsx", "/favicon.ico"):
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(url + path, timeout=10)
            assert e.value.code == 404
        # concurrent scrapes (ThreadingHTTPServer) all succeed and agree
        results = []

        def scrape():
            with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
                results.append(parse(resp.read().decode())[("fh_event_head", (("fh_instance", name),))])

        threads = [threading.Thread(target=scrape) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(results) == 8 and len(set(results)) == 1


def test_once_on_stdout(live, run_dir):
    name, _ = live
    p = fh("metrics", "--name", name, "--once")
    check_against_reader(parse(p.stdout), name)


def test_textfile_once(live, run_dir, tmp_path):
    name, _ = live
    out = tmp_path / "prom" / "fh.prom"
    out.parent.mkdir()
    out.write_text("old\n")
    fh("metrics", "--name", name, "--textfile", out, "--once")
    check_against_reader(parse(out.read_text()), name)
    assert sorted(os.listdir(out.parent)) == ["fh.prom"]  # no temporary left behind
    assert oct(out.stat().st_mode & 0o777) == "0o644"


def test_textfile_once_from_config(live, run_dir, tmp_path):
    """`fh metrics --config`: the instance name and the textfile come from fh.toml's [instance] and [metrics]."""
    name, _ = live
    out = tmp_path / "fh.prom"
    cfg = tmp_path / "fh.toml"
    cfg.write_text(f'[instance]\nname = "{name}"\n[[feed.lines]]\ngroup = "233.54.12.111"\nport = 26477\n'
                   f'[nic]\nvdev = "net_null0"\n[metrics]\ntextfile = "{out}"\ninterval_s = 5\n')
    fh("metrics", "--config", cfg, "--once")
    check_against_reader(parse(out.read_text()), name)
    p = fh("metrics", "--config", tmp_path / "none.toml", "--once", check=False)
    assert p.returncode == 2 and "no such file" in p.stderr and len(p.stderr.splitlines()) == 1


def test_textfile_is_never_seen_half_written(live, run_dir, tmp_path):
    """While `fh metrics --textfile` rewrites the file every 50 ms, every read of it is a whole exposition."""
    name, _ = live
    out = tmp_path / "fh.prom"
    proc = fh_popen("metrics", "--name", name, "--textfile", out, "--interval", "0.05", stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not out.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.01)
        ages = set()  # the heartbeat age differs from one version of the file to the next
        t_end = time.monotonic() + 1.5
        reads = 0
        while time.monotonic() < t_end:
            ages.add(value(parse(out.read_text()), "fh_heartbeat_age_seconds"))
            reads += 1
        assert reads > 10 and len(ages) > 3  # it was replaced many times while we read
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stderr.close()
    assert rc == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "run") == ["fh.prom"]


def test_write_textfile_replaces_atomically(tmp_path, monkeypatch):
    out = tmp_path / "x.prom"
    out.write_text("old\n")
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        # at the moment of the rename: the new text is complete in a file of the same directory, and the
        # target still holds the old text
        seen.append((Path(src).parent == tmp_path, Path(src).read_text(), Path(dst).read_text()))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    metrics.write_textfile(out, "new 1\n")
    assert seen == [(True, "new 1\n", "old\n")] and out.read_text() == "new 1\n"

    def broken(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError):
        metrics.write_textfile(out, "newer\n")
    assert out.read_text() == "new 1\n" and sorted(os.listdir(tmp_path)) == ["x.prom"]


def test_absent_instance(run_dir):
    name = _unique()
    samples = parse(fh("metrics", "--name", name, "--once").stdout)
    assert value(samples, "fh_writer_up") == 0 and value(samples, "fh_supervisor_up") == 0
    assert value(samples, "fh_writer_state", state="absent") == 1
    assert not any(n.startswith("fh_messages") for n, _ in samples)


def test_render_escapes_and_orders():
    f1 = metrics.Family("x_total", "counter", 'a "help"\\ with\nnewline').add(3, cause='q"b\\s\nn')
    f2 = metrics.Family("empty", "gauge", "no samples: left out")
    f3 = metrics.Family("g", "gauge", "g").add(0.25).add(float("inf"), k="v")
    text = metrics.render([f1, f2, f3], {"instance": "i"})
    assert text == ('# HELP x_total a "help"\\\\ with\\nnewline\n# TYPE x_total counter\n'
                    'x_total{instance="i",cause="q\\"b\\\\s\\nn"} 3\n'
                    '# HELP g g\n# TYPE g gauge\ng{instance="i"} 0.25\ng{instance="i",k="v"} +Inf\n')
    s = parse(text)
    assert s[("x_total", (("cause", 'q\\"b\\\\s\\nn'), ("instance", "i")))] == 3


def test_bad_arguments(run_dir):
    p = fh("metrics", "--listen", "nowhere", check=False)
    assert p.returncode == 2 and "--listen 'nowhere': expected HOST:PORT" in p.stderr
    p = fh("metrics", "--textfile", "/nonexistent-dir/x.prom", "--once", check=False)
    assert p.returncode == 2 and "--textfile /nonexistent-dir/x.prom" in p.stderr


def test_a_textfile_it_cannot_write_is_refused_before_it_is_announced(run_dir, tmp_path):
    """--textfile DIR, or a file in a directory that does not exist: fh metrics said "writing DIR every 15 s" and
    then "Is a directory" / "No such file or directory". Now one line naming the cause and the fix, before that."""
    name = _unique()
    d = tmp_path / "d"
    d.mkdir()
    for path, want in [(d, f"a directory, not a file; give the file to write in it, e.g. {d}/fh.prom"),
                       (f"{d}/", "a directory, not a file"),
                       (tmp_path / "nodir" / "x.prom", f"there is no directory {tmp_path / 'nodir'}; create it first "
                                                       f"(mkdir -p {tmp_path / 'nodir'})")]:
        for once in ([], ["--once"]):
            p = fh("metrics", "--name", name, "--textfile", path, *once, check=False, timeout=30)
            lines = p.stderr.strip().splitlines()
            assert p.returncode == 2 and len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
            assert lines[0].startswith(f"fh: --textfile {path}: ") and want in lines[0], lines[0]
    assert os.listdir(d) == [] and not (tmp_path / "nodir").exists()
