"""Property-based fuzzing (hypothesis) of the Python parsers that read files from outside: the config loader,
the pcap reader and `fh decode` of ITCH and pcap files. Each either accepts its input or refuses it with its
own one-line error (ConfigError naming the file, ValueError naming the pcap, `fh decode:` lines and exit 1);
no other exception escapes, and what is accepted keeps its invariants (the pcap reader's counters add up,
every decoded line is a JSON object). The C decoders are fuzzed with libFuzzer: native/fuzz, scripts/fuzz.sh.

Deterministic by default (derandomized, 150 examples each); HYPOTHESIS_PROFILE=fuzz runs more, randomly
(FH_FUZZ_EXAMPLES each, default 5000; docs/hardening.md)."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import struct
import tempfile
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is not installed (scripts/setup.sh installs it)")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from conftest import ROOT  # noqa: E402
from handler import config  # noqa: E402
from handler.cli import main as cli  # noqa: E402
from handler.net.pcapfile import COUNTER_NAMES, PcapReader  # noqa: E402

settings.register_profile("ci", max_examples=150, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=int(os.environ.get("FH_FUZZ_EXAMPLES", "5000")), deadline=None,
                          database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

PCAP = ROOT / "pcaps" / "synth-ab-40k.pcap"
ITCH = ROOT / "pcaps" / "synth-100k.itch"


def _tmpfile(data: bytes, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(prefix="fh-fuzz-", suffix=suffix)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return Path(name)


# ---- config ---------------------------------------------------------------------------------------------

GOOD = {
    "instance": {"name": "fuzzcfg"},
    "feed": {"protocol": "moldudp64-itch50",
             "lines": [{"name": "A", "group": "233.54.12.111", "port": 26477},
                       {"name": "B", "group": "233.49.196.111", "port": 26477}],
             "retransmission": {"server": "10.0.0.1:26478"}},
    "nic": {"vdev": f"net_pcap0,rx_pcap={PCAP}"},
    "memory": {"hugepages": False, "mb": 256},
    "run": {"idle": "backoff", "exit_idle_ms": 300},
    "shm": {"depth": 10, "events": 1024},
    "metrics": {"listen": "127.0.0.1:9108"},
}


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a TOML basic string (\uXXXX escapes included)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


def toml(doc: dict) -> str:
    out = []
    for section, table in doc.items():
        if not isinstance(table, dict):
            out.insert(0, f"{json.dumps(section)} = {_toml_value(table)}")
            continue
        out.append(f"[{json.dumps(section)}]")
        out += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(out) + "\n"


scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1), st.booleans(), st.floats(),
    st.text(max_size=40), st.sampled_from(["auto", "", "233.54.12.111", "10.0.0.1:26478", "127.0.0.1:0",
                                           "0000:3b:00.0", "net_pcap0", "/nonexistent", "resume", "snapshot",
                                           "spin", "backoff", "root", "fh", "nogroup", "0.0.0.0:9108"]))
values = st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                      max_leaves=6)
keys = st.sampled_from(sorted({k for ks in config._SCHEMA.values() for k in ks} | config._LINE_KEYS |
                              config._RETRANS_KEYS | {"bogus"}))
sections = st.sampled_from(sorted(config._SCHEMA) + ["bogus"])
edit = st.tuples(st.sampled_from(["set", "del", "line", "retrans"]), sections, keys, values)


def _apply(doc: dict, edits) -> dict:
    doc = json.loads(json.dumps(GOOD))
    for op, sec, key, val in edits:
        if op == "del":
            doc.get(sec, {}).pop(key, None) if isinstance(doc.get(sec), dict) else None
        elif op == "line":
            doc["feed"]["lines"][len(key) % 2][key] = val
        elif op == "retrans":
            doc["feed"].setdefault("retransmission", {})[key] = val
        else:
            doc.setdefault(sec, {})
            if isinstance(doc[sec], dict):
                doc[sec][key] = val
    return doc


def _load(text: str | bytes):
    p = _tmpfile(text.encode() if isinstance(text, str) else text, ".toml")
    try:
        return p, config.load(p)
    except config.ConfigError as e:
        msg = str(e)
        assert msg.startswith(str(p)) and "\n" not in msg.strip(), msg
        return p, None
    finally:
        p.unlink()


@given(st.lists(edit, max_size=4))
def test_config_loader_edits(edits):
    """Any value at any key of a good config: a Config, or one ConfigError naming the file (and the key)."""
    _load(toml(_apply(GOOD, edits)))


@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_config_loader_bytes(data):
    """Bytes that are not TOML, not UTF-8, or TOML of any shape: a ConfigError, never a traceback."""
    _load(data)


# ---- pcap reader ----------------------------------------------------------------------------------------

_BASE_PCAP = PCAP.read_bytes()[:24 + 6 * (16 + 1514)]  # the header and the first frames


def _records(frames: list[bytes], linktype: int, magic: bytes) -> bytes:
    order = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    out = magic + struct.pack(order + "HHiIII", 2, 4, 0, 0, 65535, linktype)
    for i, f in enumerate(frames):
        out += struct.pack(order + "IIII", i, i, len(f), len(f)) + f
    return out


eth_frames = st.lists(st.binary(max_size=120).map(lambda b: b"\x01" * 12 + b"\x08\x00" + b) |
                      st.binary(max_size=120).map(lambda b: b"\x01" * 12 + b"\x81\x00\x00\x8d\x08\x00" + b) |
                      st.binary(max_size=60), max_size=8)


def _check_pcap(data: bytes):
    p = _tmpfile(data, ".pcap")
    try:
        try:
            r = PcapReader(p)
        except ValueError as e:
            assert str(e).startswith(str(p)), e
            return
        dgs = list(r.datagrams())
        c = r.counters
        assert set(c) == set(COUNTER_NAMES)
        drops = sum(c[k] for k in COUNTER_NAMES if k not in ("frames", "datagrams", "truncated_file"))
        assert c["frames"] == c["datagrams"] + drops == len(dgs) + drops
        assert c["truncated_file"] in (0, 1)
        for d in dgs:
            assert 0 <= d.sport < 65536 and 0 <= d.dport < 65536 and len(d.payload) <= 65535 - 8
            assert d.vlan is None or 0 <= d.vlan < 4096
    finally:
        p.unlink()


@given(eth_frames, st.sampled_from([1, 113, 0, 105]),
       st.sampled_from([b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"]))
def test_pcap_reader_frames(frames, linktype, magic):
    _check_pcap(_records(frames, linktype, magic))


@given(st.lists(st.tuples(st.integers(0, len(_BASE_PCAP) - 1), st.binary(min_size=1, max_size=8)), max_size=8),
       st.integers(0, len(_BASE_PCAP)))
def test_pcap_reader_mutated_capture(patches, cut):
    """A real capture with bytes overwritten and cut short anywhere."""
    b = bytearray(_BASE_PCAP)
    for off, val in patches:
        b[off:off + len(val)] = val
    _check_pcap(bytes(b[:cut]))


# ---- fh decode ------------------------------------------------------------------------------------------

_ITCH = ITCH.read_bytes()[:3000]


def _decode(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(["decode", "--json", *args])
    return rc, out.getvalue(), err.getvalue()


def _check_decode(args, path):
    rc, out, err = _decode(args)
    assert rc in (0, 1, 2), rc
    for line in out.splitlines():
        assert isinstance(json.loads(line), dict), line
    for line in err.splitlines():
        assert line.startswith(("fh decode: ", "fh: ")), line
    assert rc == 0 or err, "a failure must say why"


@given(st.lists(st.tuples(st.integers(0, len(_ITCH) - 1), st.binary(min_size=1, max_size=6)), max_size=6),
       st.integers(0, len(_ITCH)))
def test_decode_itch_mutated(patches, cut):
    b = bytearray(_ITCH)
    for off, val in patches:
        b[off:off + len(val)] = val
    p = _tmpfile(bytes(b[:cut]), ".itch")
    try:
        _check_decode(["--itch", str(p)], p)
    finally:
        p.unlink()


@given(st.lists(st.tuples(st.integers(0, len(_BASE_PCAP) - 1), st.binary(min_size=1, max_size=8)), max_size=8),
       st.integers(0, len(_BASE_PCAP)))
def test_decode_pcap_mutated(patches, cut):
    b = bytearray(_BASE_PCAP)
    for off, val in patches:
        b[off:off + len(val)] = val
    p = _tmpfile(bytes(b[:cut]), ".pcap")
    try:
        _check_decode(["--pcap", str(p)], p)
    finally:
        p.unlink()


def test_config_not_utf8_found_by_fuzzing(tmp_path):
    """Found by test_config_loader_bytes: a config that is not UTF-8 raised UnicodeDecodeError (a traceback
    naming neither the file nor the fix)."""
    p = tmp_path / "fh.toml"
    p.write_bytes(b'[instance]\nname = "caf\xe9"\n')
    with pytest.raises(config.ConfigError, match=r"fh.toml: not UTF-8 text \(byte 0xe9 at offset 22\)"):
        config.load(p)
