"""A small, strict reader of classic pcap files that yields UDP/IPv4 datagrams.

Supported:
  * classic pcap, magic ``a1b2c3d4`` (microsecond timestamps) and ``a1b23c4d``
    (nanosecond timestamps), in either byte order; pcapng is refused with a
    clear message;
  * link types Ethernet (1) and Linux cooked capture SLL (113);
  * any number of 802.1Q / 802.1ad (and legacy 0x9100 QinQ) VLAN tags;
  * IPv4 with options (IHL honoured); fragments are not reassembled but
    counted and dropped;
  * UDP: the payload is exactly the UDP length minus 8, which must fit both in
    the IPv4 total length and in the captured bytes.

Every frame that is not yielded is counted in ``counters`` under its cause:

  ``not_ipv4``         the (innermost) ethertype / SLL protocol is not IPv4
  ``not_udp``          IPv4, but the protocol is not UDP (17)
  ``ip_fragment``      IPv4 with MF set or a non-zero fragment offset
  ``truncated_frame``  the captured bytes end before the Ethernet/VLAN/IPv4/UDP
                       headers or before the lengths those headers declare
                       (e.g. a snaplen-cut capture)
  ``bad_ip_header``    IP version not 4, IHL < 5, or total length < IHL * 4
  ``bad_udp_length``   UDP length < 8 or larger than the IPv4 payload

plus ``frames`` (records read), ``datagrams`` (datagrams yielded) and
``truncated_file`` (1 when the last record is cut off: reading stops there; a
truncated tail never raises) and ``bad_record`` (1 when a record header claims
more than MAX_RECORD bytes and the snap length: damaged, reading stops there,
``bad_record_at`` is its offset). A file that is not a classic pcap at all raises
``PcapError`` (an ``InputError``, a ``ValueError``) naming the path.

Checksums are not verified (anonymised captures carry zero checksums).

Usage::

    reader = PcapReader(path)
    for dg in reader.datagrams():
        ...dg.payload...
    reader.counters

    datagrams, counters = read_udp(path)
"""

from __future__ import annotations

import mmap
import os
import struct
from typing import Iterator, NamedTuple

from ..errors import InputError


class PcapError(InputError):
    """A file that is not a classic pcap fh can read; the message names the path and what to do."""


__all__ = ["Datagram", "PcapReader", "read_udp", "COUNTER_NAMES",
           "LINKTYPE_ETHERNET", "LINKTYPE_LINUX_SLL"]

LINKTYPE_ETHERNET = 1
LINKTYPE_LINUX_SLL = 113

ETHERTYPE_IPV4 = 0x0800
VLAN_ETHERTYPES = (0x8100, 0x88A8, 0x9100)
IPPROTO_UDP = 17

# Frame-level drop causes, in a stable order (all start at 0).
COUNTER_NAMES = (
    "frames",
    "datagrams",
    "not_ipv4",
    "not_udp",
    "ip_fragment",
    "truncated_frame",
    "bad_ip_header",
    "bad_udp_length",
    "truncated_file",
    "bad_record",
)

# A record may hold at most this many bytes, whatever the header's snap length says (libpcap's and Wireshark's
# limit for Ethernet, 256 KiB): a record header claiming more is damaged, not a frame.
MAX_RECORD = 262144

_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
# magic bytes as they appear in the file -> (struct byte-order prefix, nanosecond?)
_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", False),
    b"\xa1\xb2\xc3\xd4": (">", False),
    b"\x4d\x3c\xb2\xa1": ("<", True),
    b"\xa1\xb2\x3c\x4d": (">", True),
}
_GLOBAL_HEADER_LEN = 24
_RECORD_HEADER_LEN = 16

_ETH_TYPE_AT_12 = struct.Struct(">12xH")
_SLL_PROTO = struct.Struct(">14xH")
_VLAN_TAG = struct.Struct(">HH")          # TCI, next ethertype
_IPV4 = struct.Struct(">BxHxxHxB2x4s4s")  # ver/ihl, total length, flags/frag, protocol, src, dst
_UDP = struct.Struct(">HHH2x")           # sport, dport, length


class Datagram(NamedTuple):
    ts_ns: int             # capture time, ns since the epoch
    src: str               # IPv4 source, dotted quad
    dst: str               # IPv4 destination, dotted quad
    sport: int
    dport: int
    payload: bytes         # the UDP payload (UDP length - 8 bytes)
    vlan: int | None       # VLAN id of the outermost tag, None if untagged


def _ip(b: bytes) -> str:
    return f"{b[0]}.{b[1]}.{b[2]}.{b[3]}"


class PcapReader:
    """Reads one classic pcap file. The header is checked on construction."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self.counters: dict[str, int] = {name: 0 for name in COUNTER_NAMES}
        with open(self.path, "rb") as f:
            head = f.read(_GLOBAL_HEADER_LEN)
        magic = head[:4]
        if magic == _PCAPNG_MAGIC:
            raise PcapError(
                f"{self.path}: pcapng is not supported: convert with `editcap -F pcap IN OUT`")
        if magic not in _MAGICS:
            raise PcapError(f"{self.path}: not a pcap file (magic {magic.hex() or 'missing'})")
        if len(head) < _GLOBAL_HEADER_LEN:
            raise PcapError(f"{self.path}: not a pcap file (global header cut off "
                             f"at {len(head)} of {_GLOBAL_HEADER_LEN} bytes)")
        order, self.nanosecond = _MAGICS[magic]
        self.byteorder = "little" if order == "<" else "big"
        (self.version_major, self.version_minor, _thiszone, _sigfigs,
         self.snaplen, network) = struct.unpack_from(order + "HHiIII", head, 4)
        # The link type is the low 16 bits; the upper bits may carry FCS information.
        self.linktype = network & 0xFFFF
        if self.linktype not in (LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL):
            raise PcapError(
                f"{self.path}: unsupported pcap link type {self.linktype} "
                f"(supported: 1 Ethernet, 113 Linux cooked SLL)")
        self._record = struct.Struct(order + "IIII")
        self.bad_record_at: int | None = None  # the byte offset of a damaged record header (bad_record)

    # -- frames --------------------------------------------------------------------------------

    def datagrams(self) -> Iterator[Datagram]:
        """Yield the UDP/IPv4 datagrams of the file in capture order; counts the rest."""
        with open(self.path, "rb") as f:
            try:
                buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except (ValueError, OSError):     # empty file, or not mappable (pipe, ...)
                buf = f.read()
        try:
            yield from self._walk(buf)
        finally:
            if isinstance(buf, mmap.mmap):
                buf.close()

    def _walk(self, buf) -> Iterator[Datagram]:
        c = self.counters
        size = len(buf)
        rec = self._record
        ts_mult = 1 if self.nanosecond else 1000
        sll = self.linktype == LINKTYPE_LINUX_SLL
        pos = _GLOBAL_HEADER_LEN
        while pos < size:
            if pos + _RECORD_HEADER_LEN > size:
                c["truncated_file"] += 1
                return
            ts_sec, ts_frac, incl_len, _orig_len = rec.unpack_from(buf, pos)
            if incl_len > max(self.snaplen, MAX_RECORD):  # a damaged record header: no frame after it can be found
                c["bad_record"] += 1
                self.bad_record_at = pos
                return
            start = pos + _RECORD_HEADER_LEN
            end = start + incl_len
            if end > size:
                c["truncated_file"] += 1
                return
            pos = end
            c["frames"] += 1

            # -- link layer --
            vlan = None
            if sll:
                if incl_len < 16:
                    c["truncated_frame"] += 1
                    continue
                (ethertype,) = _SLL_PROTO.unpack_from(buf, start)
                off = start + 16
            else:
                if incl_len < 14:
                    c["truncated_frame"] += 1
                    continue
                (ethertype,) = _ETH_TYPE_AT_12.unpack_from(buf, start)
                off = start + 14
            cut = False
            while ethertype in VLAN_ETHERTYPES:
                if off + 4 > end:
                    cut = True
                    break
                tci, ethertype = _VLAN_TAG.unpack_from(buf, off)
                if vlan is None:
                    vlan = tci & 0x0FFF
                off += 4
            if cut:
                c["truncated_frame"] += 1
                continue
            if ethertype != ETHERTYPE_IPV4:
                c["not_ipv4"] += 1
                continue

            # -- IPv4 --
            if off + 20 > end:
                c["truncated_frame"] += 1
                continue
            ver_ihl, total_len, flags_frag, proto, src, dst = _IPV4.unpack_from(buf, off)
            ihl = (ver_ihl & 0x0F) * 4
            if ver_ihl >> 4 != 4 or ihl < 20 or total_len < ihl:
                c["bad_ip_header"] += 1
                continue
            if off + total_len > end:
                c["truncated_frame"] += 1
                continue
            if flags_frag & 0x3FFF:          # MF flag or a fragment offset
                c["ip_fragment"] += 1
                continue
            if proto != IPPROTO_UDP:
                c["not_udp"] += 1
                continue
            ip_end = off + total_len          # anything after is Ethernet padding / FCS
            off += ihl

            # -- UDP --
            if off + 8 > ip_end:              # no room for the UDP header in the IP packet
                c["bad_udp_length"] += 1
                continue
            sport, dport, udp_len = _UDP.unpack_from(buf, off)
            if udp_len < 8 or off + udp_len > ip_end:
                c["bad_udp_length"] += 1
                continue
            c["datagrams"] += 1
            yield Datagram((ts_sec * 1_000_000_000) + ts_frac * ts_mult,
                           _ip(src), _ip(dst), sport, dport,
                           bytes(buf[off + 8:off + udp_len]), vlan)


def read_udp(path: str | os.PathLike) -> tuple[list[Datagram], dict[str, int]]:
    """All UDP/IPv4 datagrams of a pcap file, and the reader's counters."""
    reader = PcapReader(path)
    return list(reader.datagrams()), reader.counters
