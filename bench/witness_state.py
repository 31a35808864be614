"""fh witness --state (issue 14; docs/replication.md, "A witness"): what the saved replay record costs and what a
crash leaves (bench/replication.md, "A keyed witness's state").

  save cost     Saver.save() of a keyed Witness filled with 1, 64 and 4096 pairs (MAX_PAIRS), each of MAX_HOSTS
                senders and MAX_EPOCHS primary epochs (near-maximal nonces and addresses): the file's size, the
                median and max of 20 saves in line (the witness's loop answers nothing meanwhile) and of 20 in a
                forked child (the loop stalls for the fork only; and when the child is done), and the load at start.
  crash window  --kills N: a real keyed `fh witness --state` on loopback, one primary beating every --beat-ms, killed
                -9 at a random time 1-2 s in; started again on the same state, every beat sent before the kill sent
                again, in order: the beats it accepts are those the last save did not hold (SAVE_S, 0.5 s, at most).
No busy polling: fine beside other work; the crash window's figures depend on the scheduler only through the timer.

    .venv/bin/python bench/witness_state.py [--kills 12] [--beat-ms 100]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from handler import witness as W  # noqa: E402


def filled(npairs: int, key: bytes) -> W.Witness:
    w, t = W.Witness(now_ns=0, key=key), 1
    for i in range(npairs):
        for h in range(W.MAX_HOSTS):
            for e in range(W.MAX_EPOCHS if h == 0 else 1):
                w.handle(W.pack(W.BEAT, f"pair-{i:026d}", role=W.PRIMARY, epoch=4_000_000_000 + e,
                                nonce=(1 << 63) + t, key=key), (f"255.255.255.25{h % 6}", 60000 + h), t)
                t += 1
    return w


def save_cost(d: str, key: bytes) -> None:
    """In line (as at exit, and before saves ran in a child): the loop stalls for the whole save. In a child (fh
    witness's ticks): the loop stalls for the fork only; the child's encode, write and fsyncs run beside it."""
    for n in (1, 64, W.MAX_PAIRS):
        w = filled(n, key)
        path = os.path.join(d, "w.state")
        s, b, ts, fs, cs = W.Saver(w, path), W.Saver(w, path, background=True), [], [], []
        for _ in range(20):
            w.dirty = True
            t0 = time.perf_counter()
            assert s.save()
            ts.append(time.perf_counter() - t0)
            w.dirty = True
            t0 = time.perf_counter()
            assert b.save() and b.child is not None
            fs.append(time.perf_counter() - t0)
            os.waitid(os.P_PID, b.child, os.WEXITED | os.WNOWAIT)
            cs.append(time.perf_counter() - t0)
            assert b.save()  # reaped: it saved
        t0 = time.perf_counter()
        W.read_state(path)
        load = time.perf_counter() - t0
        for x in (ts, fs, cs):
            x.sort()
        print(f"{n:5d} pairs: {os.path.getsize(path):9,d} bytes; in line median {ts[10] * 1e3:7.3f} ms, max "
              f"{ts[-1] * 1e3:7.3f} ms; in a child: the loop's fork median {fs[10] * 1e3:6.3f} ms, max "
              f"{fs[-1] * 1e3:6.3f} ms, the child done in {cs[10] * 1e3:7.3f} ms (median); load {load * 1e3:6.1f} ms")


def _start(kf: str, st: str, key: bytes):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen([sys.executable, "-m", "handler", "witness", "--listen", f"127.0.0.1:{port}", "--key-file",
                          kf, "--state", st], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    addr, c = ("127.0.0.1", port), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.settimeout(0.2)
    for _ in range(100):  # until it answers
        try:
            c.sendto(W.pack(W.QUERY, "x", nonce=1, key=key), addr)
            c.recvfrom(256)
            break
        except OSError:
            time.sleep(0.05)
    return p, addr, c


def crash_window(d: str, key: bytes, kf: str, kills: int, beat_ms: int) -> None:
    st, nonce, worst = os.path.join(d, "w.state"), time.time_ns(), (0, 0.0)
    for k in range(kills):
        p, addr, c = _start(kf, st, key)
        sent, end = [], time.monotonic() + 1 + random.random()
        while time.monotonic() < end:
            nonce += 1
            b = W.pack(W.BEAT, "pw", role=W.PRIMARY, epoch=1, nonce=nonce, key=key)
            c.sendto(b, addr)
            sent.append((time.monotonic(), b))
            time.sleep(beat_ms / 1000)
        killed = time.monotonic()
        p.kill()
        p.wait()
        c.close()
        p, addr, c = _start(kf, st, key)
        for _, b in sent:
            c.sendto(b, addr)
        c.sendto(W.pack(W.QUERY, "x", nonce=2, key=key), addr)
        c.recvfrom(256)  # after every replay (one socket, in order)
        c.close()
        p.send_signal(signal.SIGTERM)
        n = json.loads(p.communicate(timeout=10)[0].splitlines()[-1])["beats"]
        oldest = killed - sent[-n][0] if n else 0.0
        worst = max(worst, (n, oldest))
        print(f"kill {k + 1:2d}: {len(sent):2d} beats sent, {n} accepted again after the restart"
              + (f" (the oldest sent {oldest * 1e3:.0f} ms before the kill)" if n else ""))
    print(f"at most {worst[0]} beats accepted again, the oldest {worst[1] * 1e3:.0f} ms before its kill "
          f"(SAVE_S = {W.SAVE_S} s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=12)
    ap.add_argument("--beat-ms", type=int, default=100)
    a = ap.parse_args()
    key = os.urandom(32)
    with tempfile.TemporaryDirectory() as d:
        kf = os.path.join(d, "k")
        with open(kf, "wb") as f:
            f.write(key)
        os.chmod(kf, 0o600)
        save_cost(d, key)
        crash_window(d, key, kf, a.kills, a.beat_ms)


if __name__ == "__main__":
    main()
