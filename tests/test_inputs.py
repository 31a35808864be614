"""Input files are told apart by content (handler/inputs.py): an ITCH daily file, a pcap, a pcapng and the gzip
of each; the wrong kind is refused with one line naming what the file seems to be, and gzipped inputs are read
directly."""
import gzip
import os

import pytest

from handler import inputs

from conftest import ROOT, fh

ITCH = ROOT / "pcaps" / "synth-100k.itch"
PCAP = ROOT / "pcaps" / "synth-ab-40k.pcap"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    out = {"itch": ITCH, "pcap": PCAP}
    out["itch_gz"] = d / "day.itch.gz"
    out["itch_gz"].write_bytes(gzip.compress(ITCH.read_bytes(), compresslevel=1))
    out["pcap_gz"] = d / "ab.pcap.gz"
    out["pcap_gz"].write_bytes(gzip.compress(PCAP.read_bytes(), compresslevel=1))
    out["pcapng"] = d / "x.pcapng"
    out["pcapng"].write_bytes(b"\x0a\x0d\x0d\x0a" + b"\x1c\x00\x00\x00\x4d\x3c\x2b\x1a" + bytes(20))
    out["text"] = d / "notes.txt"
    out["text"].write_text("hello, this is not market data\n" * 10)
    out["random"] = d / "random.bin"
    out["random"].write_bytes(os.urandom(10_000))
    out["empty"] = d / "empty"
    out["empty"].write_bytes(b"")
    out["bad_gz"] = d / "bad.gz"
    out["bad_gz"].write_bytes(gzip.compress(b"x" * 1000)[:30])
    return out


def test_sniff(files):
    got = {k: inputs.sniff(p) for k, p in files.items()}
    assert got == {"itch": "itch", "pcap": "pcap", "itch_gz": "gzip:itch", "pcap_gz": "gzip:pcap", "pcapng": "pcapng",
                   "text": "unknown", "random": "unknown", "empty": "empty", "bad_gz": "gzip:unknown"}


def test_every_real_file_is_recognised(real):
    for p in sorted((real / "itch").glob("*")):
        assert inputs.sniff(p) == "itch", p
    for p in sorted((real / "moldudp64").glob("*.pcap")):
        assert inputs.sniff(p) == "pcap", p


def test_gzipped_inputs_give_the_same_books(files):
    plain = fh("book", "dump", "--itch", files["itch"]).stdout
    assert plain and fh("book", "dump", "--itch", files["itch_gz"]).stdout == plain
    plain = fh("book", "dump", "--pcap", files["pcap"]).stdout
    assert plain and fh("book", "dump", "--pcap", files["pcap_gz"]).stdout == plain
    assert fh("decode", "--pcap", files["pcap_gz"]).stdout == fh("decode", "--pcap", files["pcap"]).stdout


@pytest.mark.parametrize("cmd, key, want", [
    (["book", "dump", "--itch"], "pcap", "is a pcap capture, not an ITCH 5.0 daily file: give it as --pcap instead"),
    (["book", "dump", "--itch"], "pcap_gz", "is a gzipped pcap capture, not an ITCH 5.0 daily file"),
    (["book", "dump", "--pcap"], "itch", "is an ITCH 5.0 daily file, not a pcap capture: give it as --itch instead"),
    (["book", "dump", "--pcap"], "pcapng", "is a pcapng capture, not a pcap capture: convert it to pcap first"),
    (["decode", "--itch"], "text",
     "is neither an ITCH 5.0 daily file nor a capture: give an ITCH 5.0 daily file (NASDAQ format, gzipped or not)"),
    (["decode", "--pcap"], "random", "is neither an ITCH 5.0 daily file nor a capture"),
    (["decode", "--itch"], "empty", "is empty"),
    # commands without an option for the other kind say which commands read it (they said "give it as --pcap
    # instead", an option they do not have)
    (["publish", "--itch"], "pcap", "this command reads daily files only; a capture is read by fh replay PCAP"),
    (["pcap", "synth", "/dev/null", "--itch"], "pcap", "this command reads daily files only"),
    (["pcap", "inspect"], "itch", "this command reads captures only; make one of a daily file with fh pcap synth"),
    (["replay"], "itch", "this command reads captures only"),
    (["bench", "engine", "--itch"], "text", "neither an ITCH 5.0 daily file nor a capture"),
])
def test_wrong_kind_is_one_line_naming_the_file(files, cmd, key, want):
    p = fh(*cmd, files[key], check=False)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert p.stderr.count("\n") == 1 and str(files[key]) in p.stderr and want in p.stderr, p.stderr
    assert "Traceback" not in p.stderr
    if key in ("text", "random"):  # what it is not (a capture, a daily file) is said already
        assert ", not " not in p.stderr, p.stderr


def test_damaged_gzip_is_refused(files):
    p = fh("book", "dump", "--itch", files["bad_gz"], check=False)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "gzip" in p.stderr, p.stderr


@pytest.mark.parametrize("opt, want", [
    (["--session", "TOOLONGSESSION"], "1 to 10 printable ASCII"),
    (["--session", "A B"], "1 to 10 printable ASCII"),
    (["--vlan", "5000"], "from 1 to 4094"),
    (["--vlan", "0x10"], "from 1 to 4094"),
    (["--mtu", "50"], "from 128 to 9216"),
])
def test_pcap_synth_options_are_range_checked(tmp_path, opt, want):
    out = tmp_path / "x.pcap"
    p = fh("pcap", "synth", out, "--messages", "1000", "--instruments", "2", *opt, check=False)
    assert p.returncode == 2 and want in p.stderr and not out.exists(), p.stderr


def test_pcap_inspect_reads_as_text():
    out = fh("pcap", "inspect", PCAP).stdout
    assert "1,712 frames, 1,712 UDP datagrams, none skipped" in out
    assert "FHSYNTH001  1..40,000" in out and "{'" not in out
