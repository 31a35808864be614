"""The reference model: a small, obviously-correct pure-Python MoldUDP64 + ITCH 5.0 + book model.

It is the oracle of the differential tests: ``docs/decode-format.md`` defines what
``decode_message`` returns and ``docs/book-semantics.md`` defines what ``ReferenceBook``
does. Clarity beats speed here, but every operation is a dict look-up, so a whole stream is
processed in linear time.

Choices made where the documents leave room (keep the C engine in step):

* Per-type counters ``type_<letter>`` count the messages that pass the message checks (known
  type, at least the spec length; long messages included), so
  ``messages == sum(type_*) + unknown_type + short_message``.
* Check order for ``A`` / ``F``: ``bad_side``, ``zero_shares``, ``duplicate_ref``,
  ``order_capacity``, then the book is looked up or created (``instrument_capacity``, else
  ``unknown_locate`` when created), then the order is added (``level_capacity`` never fires here:
  levels are unlimited). A skipped message never creates a book.
* Check order for the new order of ``U``: ``zero_shares``, ``duplicate_ref``, ``order_capacity``
  (checked after the original is removed, so a new reference equal to the original one is fine).
* ``E`` / ``C`` record the last trade with the message's executed shares, also on overexecution.
* ``P`` for a locate that has no book changes nothing (and counts nothing).
* ``H`` for a locate with no book creates it (``unknown_locate``), like ``A`` / ``F``.
* MoldUDP64: bytes after the ``count`` blocks (or after the header of a heartbeat / end of
  session) are ignored, not counted as malformed.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Iterable, Iterator, NamedTuple

__all__ = [
    "MESSAGE_SPECS", "MESSAGE_LENGTHS", "ANOMALY_COUNTERS", "DecodeError", "check_message",
    "decode_message", "iter_daily_blocks", "iter_daily_file", "split_daily_file", "MoldHeader", "MoldDatagram", "iter_mold",
    "Order", "Book", "ReferenceBook", "apply_daily_file", "apply_pcap", "decode_daily_file",
    "decode_pcap", "dump_lines", "MOLD_HEARTBEAT", "MOLD_END_OF_SESSION",
]

# --------------------------------------------------------------------------------------------
# Message layouts, transcribed from the table of docs/decode-format.md.
# Field kinds: "aN" alpha of N bytes, "u16", "u32", "u64", "p4" Price(4), "p8" Price(8).
# --------------------------------------------------------------------------------------------

MESSAGE_SPECS: dict[str, tuple[int, list[tuple[str, str]]]] = {
    "S": (12, [("event_code", "a1")]),
    "R": (39, [("stock", "a8"), ("market_category", "a1"), ("financial_status_indicator", "a1"),
               ("round_lot_size", "u32"), ("round_lots_only", "a1"),
               ("issue_classification", "a1"), ("issue_sub_type", "a2"), ("authenticity", "a1"),
               ("short_sale_threshold_indicator", "a1"), ("ipo_flag", "a1"),
               ("luld_reference_price_tier", "a1"), ("etp_flag", "a1"),
               ("etp_leverage_factor", "u32"), ("inverse_indicator", "a1")]),
    "H": (25, [("stock", "a8"), ("trading_state", "a1"), ("reserved", "a1"), ("reason", "a4")]),
    "Y": (20, [("stock", "a8"), ("reg_sho_action", "a1")]),
    "L": (26, [("mpid", "a4"), ("stock", "a8"), ("primary_market_maker", "a1"),
               ("market_maker_mode", "a1"), ("market_participant_state", "a1")]),
    "V": (35, [("level_1", "p8"), ("level_2", "p8"), ("level_3", "p8")]),
    "W": (12, [("breached_level", "a1")]),
    "K": (28, [("stock", "a8"), ("ipo_quotation_release_time", "u32"),
               ("ipo_quotation_release_qualifier", "a1"), ("ipo_price", "p4")]),
    "J": (35, [("stock", "a8"), ("auction_collar_reference_price", "p4"),
               ("upper_auction_collar_price", "p4"), ("lower_auction_collar_price", "p4"),
               ("auction_collar_extension", "u32")]),
    "h": (21, [("stock", "a8"), ("market_code", "a1"), ("operational_halt_action", "a1")]),
    "A": (36, [("order_reference_number", "u64"), ("buy_sell_indicator", "a1"),
               ("shares", "u32"), ("stock", "a8"), ("price", "p4")]),
    "F": (40, [("order_reference_number", "u64"), ("buy_sell_indicator", "a1"),
               ("shares", "u32"), ("stock", "a8"), ("price", "p4"), ("attribution", "a4")]),
    "E": (31, [("order_reference_number", "u64"), ("executed_shares", "u32"),
               ("match_number", "u64")]),
    "C": (36, [("order_reference_number", "u64"), ("executed_shares", "u32"),
               ("match_number", "u64"), ("printable", "a1"), ("execution_price", "p4")]),
    "X": (23, [("order_reference_number", "u64"), ("cancelled_shares", "u32")]),
    "D": (19, [("order_reference_number", "u64")]),
    "U": (35, [("original_order_reference_number", "u64"),
               ("new_order_reference_number", "u64"), ("shares", "u32"), ("price", "p4")]),
    "P": (44, [("order_reference_number", "u64"), ("buy_sell_indicator", "a1"),
               ("shares", "u32"), ("stock", "a8"), ("price", "p4"), ("match_number", "u64")]),
    "Q": (40, [("shares", "u64"), ("stock", "a8"), ("cross_price", "p4"),
               ("match_number", "u64"), ("cross_type", "a1")]),
    "B": (19, [("match_number", "u64")]),
    "I": (50, [("paired_shares", "u64"), ("imbalance_shares", "u64"),
               ("imbalance_direction", "a1"), ("stock", "a8"), ("far_price", "p4"),
               ("near_price", "p4"), ("current_reference_price", "p4"), ("cross_type", "a1"),
               ("price_variation_indicator", "a1")]),
    "N": (20, [("stock", "a8"), ("interest_flag", "a1")]),
    "O": (48, [("stock", "a8"), ("open_eligibility_status", "a1"),
               ("minimum_allowable_price", "p4"), ("maximum_allowable_price", "p4"),
               ("near_execution_price", "p4"), ("near_execution_time", "u64"),
               ("lower_price_range_collar", "p4"), ("upper_price_range_collar", "p4")]),
}

MESSAGE_LENGTHS: dict[str, int] = {t: spec[0] for t, spec in MESSAGE_SPECS.items()}

# Header: message_type(a1) stock_locate(u16) tracking_number(u16) timestamp(u48), big-endian.
_HEADER_FORMAT = "cHH6s"
_KIND_FORMAT = {"u16": "H", "u32": "I", "u64": "Q", "p4": "I", "p8": "Q"}


def _body_format(fields: list[tuple[str, str]]) -> str:
    parts = []
    for _name, kind in fields:
        if kind.startswith("a"):
            parts.append(f"{int(kind[1:])}s")
        else:
            parts.append(_KIND_FORMAT[kind])
    return "".join(parts)


# One big-endian struct per type: header + body, exactly the spec length.
_STRUCTS: dict[str, struct.Struct] = {}
for _t, (_length, _fields) in MESSAGE_SPECS.items():
    _STRUCTS[_t] = struct.Struct(">" + _HEADER_FORMAT + _body_format(_fields))
    if _STRUCTS[_t].size != _length:       # the table must add up
        raise AssertionError(f"layout of {_t!r} is {_STRUCTS[_t].size} bytes, spec says {_length}")
del _t, _length, _fields

ANOMALY_COUNTERS = (
    "unknown_type", "short_message", "long_message", "truncated", "mold_malformed",
    "unknown_locate", "instrument_capacity", "bad_side", "zero_shares", "duplicate_ref",
    "unknown_ref", "overexecution", "overcancel", "locate_mismatch", "order_capacity",
    "level_capacity",
)

MOLD_HEADER_LEN = 20
MOLD_HEARTBEAT = 0
MOLD_END_OF_SESSION = 0xFFFF


# --------------------------------------------------------------------------------------------
# Decoding one message
# --------------------------------------------------------------------------------------------

class DecodeError(ValueError):
    """A block that is not decoded: ``reason`` is ``"unknown_type"`` or ``"short_message"``."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def _alpha(raw: bytes) -> str:
    return raw.decode("latin-1").rstrip(" ")


def check_message(buf: bytes) -> str | None:
    """Classify a block before decoding: None (exact length), "long_message", "short_message"
    (also for an empty block) or "unknown_type"."""
    if len(buf) == 0:
        return "short_message"
    mtype = chr(buf[0])
    if mtype not in MESSAGE_SPECS:
        return "unknown_type"
    if len(buf) < MESSAGE_LENGTHS[mtype]:
        return "short_message"
    if len(buf) > MESSAGE_LENGTHS[mtype]:
        return "long_message"
    return None


def decode_message(buf: bytes) -> dict:
    """Decode one ITCH 5.0 message into the dict of docs/decode-format.md (keys in order).

    A message longer than its spec length is decoded from its known prefix. An empty block, an
    unknown type or a message shorter than its spec length raises ``DecodeError``.
    """
    buf = bytes(buf)
    problem = check_message(buf)
    if problem == "short_message":
        if not buf:
            raise DecodeError("short_message", "empty block")
        raise DecodeError("short_message", f"type {chr(buf[0])!r}: {len(buf)} bytes, "
                                           f"spec length {MESSAGE_LENGTHS[chr(buf[0])]}")
    if problem == "unknown_type":
        raise DecodeError("unknown_type", f"type byte 0x{buf[0]:02x} ({len(buf)} bytes)")
    mtype = chr(buf[0])
    length, fields = MESSAGE_SPECS[mtype]
    values = _STRUCTS[mtype].unpack_from(buf, 0)
    _type, locate, tracking, ts6 = values[:4]
    out = {
        "type": mtype,
        "stock_locate": locate,
        "tracking_number": tracking,
        "timestamp": int.from_bytes(ts6, "big"),
    }
    for (name, kind), value in zip(fields, values[4:]):
        out[name] = _alpha(value) if kind.startswith("a") else value
    return out


# --------------------------------------------------------------------------------------------
# Framing: daily files and MoldUDP64
# --------------------------------------------------------------------------------------------

def iter_daily_blocks(data: bytes, counters: dict | None = None) -> Iterator[tuple[int, bytes]]:
    """Yield ``(offset, block)`` for each length-prefixed block of a daily file; ``offset`` is
    where the 2-byte length starts. A final block whose length or body runs past the end is not
    yielded: ``counters["truncated"]`` is incremented (when counters are given) and the generator
    returns the offset of the cut-off block (``None`` when the file ends cleanly)."""
    data = bytes(data)
    pos = 0
    end = len(data)
    while pos < end:
        if pos + 2 > end:
            break
        (length,) = struct.unpack_from(">H", data, pos)
        if pos + 2 + length > end:
            break
        yield pos, data[pos + 2:pos + 2 + length]
        pos += 2 + length
    if pos < end:
        if counters is not None:
            counters["truncated"] = counters.get("truncated", 0) + 1
        return pos
    return None


def iter_daily_file(data: bytes, counters: dict | None = None) -> Iterator[bytes]:
    """Yield the message blocks of a daily file (see ``iter_daily_blocks``)."""
    blocks = iter_daily_blocks(data, counters)
    while True:
        try:
            _offset, block = next(blocks)
        except StopIteration as stop:
            return stop.value
        yield block


def split_daily_file(data: bytes) -> tuple[list[bytes], int | None]:
    """All the complete blocks of a daily file, and the offset of a truncated tail (or None)."""
    counters: dict = {}
    blocks = [block for _offset, block in iter_daily_blocks(data, counters)]
    if not counters.get("truncated"):
        return blocks, None
    consumed = sum(2 + len(b) for b in blocks)
    return blocks, consumed


class MoldHeader(NamedTuple):
    session: str        # 10 ASCII bytes, trailing spaces stripped
    sequence: int       # sequence number of the first message
    count: int          # message count; 0 heartbeat, 0xFFFF end of session


class MoldDatagram(NamedTuple):
    header: MoldHeader | None     # None when the datagram is shorter than 20 bytes
    messages: list[bytes]         # the blocks that fit, in order
    malformed: bool


def iter_mold(payload: bytes, counters: dict | None = None) -> MoldDatagram:
    """Parse one MoldUDP64 datagram into its header and message blocks.

    Heartbeat (count 0) and end of session (count 0xFFFF) carry no blocks. A datagram shorter
    than 20 bytes, or whose blocks do not fit, is malformed (``counters["mold_malformed"]`` += 1
    when counters are given); the blocks that fit before the fault are returned.
    """
    payload = bytes(payload)
    if len(payload) < MOLD_HEADER_LEN:
        if counters is not None:
            counters["mold_malformed"] = counters.get("mold_malformed", 0) + 1
        return MoldDatagram(None, [], True)
    session_raw, sequence, count = struct.unpack_from(">10sQH", payload, 0)
    header = MoldHeader(session_raw.decode("latin-1").rstrip(" "), sequence, count)
    messages: list[bytes] = []
    malformed = False
    if count not in (MOLD_HEARTBEAT, MOLD_END_OF_SESSION):
        pos = MOLD_HEADER_LEN
        for _ in range(count):
            if pos + 2 > len(payload):
                malformed = True
                break
            (length,) = struct.unpack_from(">H", payload, pos)
            if pos + 2 + length > len(payload):
                malformed = True
                break
            messages.append(payload[pos + 2:pos + 2 + length])
            pos += 2 + length
    if malformed and counters is not None:
        counters["mold_malformed"] = counters.get("mold_malformed", 0) + 1
    return MoldDatagram(header, messages, malformed)


# --------------------------------------------------------------------------------------------
# The book model
# --------------------------------------------------------------------------------------------

class Order(NamedTuple):
    locate: int
    side: str         # "B" or "S"
    price: int        # 1/10000
    shares: int       # remaining


class Book:
    """One instrument: symbol, trading state, last trade and the aggregated levels of both
    sides (price -> [total shares, number of orders])."""

    def __init__(self, locate: int, symbol: str):
        self.locate = locate
        self.symbol = symbol
        self.trading_state = "T"
        self.last_trade: tuple[int, int] | None = None      # (price, shares)
        self.bids: dict[int, list[int]] = {}
        self.asks: dict[int, list[int]] = {}

    def side(self, side: str) -> dict[int, list[int]]:
        return self.bids if side == "B" else self.asks

    def add(self, side: str, price: int, shares: int) -> None:
        level = self.side(side).setdefault(price, [0, 0])
        level[0] += shares
        level[1] += 1

    def reduce(self, side: str, price: int, shares: int, remove_order: bool) -> None:
        levels = self.side(side)
        level = levels[price]
        level[0] -= shares
        if remove_order:
            level[1] -= 1
        if level[1] == 0:
            del levels[price]

    def levels(self, depth: int | None = None) -> tuple[list[list[int]], list[list[int]]]:
        bids = [[p, s, n] for p, (s, n) in sorted(self.bids.items(), reverse=True)]
        asks = [[p, s, n] for p, (s, n) in sorted(self.asks.items())]
        if depth is not None:
            bids, asks = bids[:depth], asks[:depth]
        return bids, asks

    def is_empty(self) -> bool:
        return not self.bids and not self.asks

    def dump(self, depth: int | None = None) -> dict:
        bids, asks = self.levels(depth)
        return {"locate": self.locate, "symbol": self.symbol, "bids": bids, "asks": asks}


class ReferenceBook:
    """Applies ITCH messages to books exactly as docs/book-semantics.md says.

    ``max_instruments`` / ``max_orders``: capacities (None: unlimited). Levels are unlimited.
    ``counters``: ``messages``, the anomaly counters of the doc and ``type_<letter>``.
    ``feed``: datagram-level statistics of ``apply_mold`` / ``apply_pcap`` (not book counters).
    """

    def __init__(self, max_instruments: int | None = None, max_orders: int | None = None):
        self.max_instruments = max_instruments
        self.max_orders = max_orders
        self.counters: dict[str, int] = {"messages": 0}
        for name in ANOMALY_COUNTERS:
            self.counters[name] = 0
        for mtype in MESSAGE_SPECS:
            self.counters[f"type_{mtype}"] = 0
        self.feed: dict[str, int] = {"datagrams": 0, "heartbeats": 0, "end_of_session": 0}
        self.pcap_counters: dict[str, int] = {}
        self.instruments: dict[int, Book] = {}
        self.orders: dict[int, Order] = {}

    # -- helpers ------------------------------------------------------------------------------

    def _count(self, name: str) -> None:
        self.counters[name] += 1

    def _book_for(self, locate: int, stock: str) -> Book | None:
        """The book of ``locate``; created (``unknown_locate``) if absent and there is room,
        else None (``instrument_capacity``)."""
        book = self.instruments.get(locate)
        if book is not None:
            return book
        if self.max_instruments is not None and len(self.instruments) >= self.max_instruments:
            self._count("instrument_capacity")
            return None
        self._count("unknown_locate")
        book = self.instruments[locate] = Book(locate, stock)
        return book

    def _find_order(self, msg: dict, ref: int) -> Order | None:
        order = self.orders.get(ref)
        if order is None:
            self._count("unknown_ref")
            return None
        if msg["stock_locate"] != order.locate:
            self._count("locate_mismatch")
        return order

    def _order_checks(self, ref: int, shares: int) -> bool:
        """The checks shared by A, F and the new order of U (after ``bad_side``)."""
        if shares == 0:
            self._count("zero_shares")
            return False
        if ref in self.orders:
            self._count("duplicate_ref")
            return False
        if self.max_orders is not None and len(self.orders) >= self.max_orders:
            self._count("order_capacity")
            return False
        return True

    def _insert(self, book: Book, ref: int, side: str, price: int, shares: int) -> None:
        self.orders[ref] = Order(book.locate, side, price, shares)
        book.add(side, price, shares)

    def _take(self, ref: int, order: Order, shares: int, anomaly: str) -> None:
        """Take ``shares`` off a live order; more than it has: count ``anomaly`` and remove it."""
        book = self.instruments[order.locate]
        if shares > order.shares:
            self._count(anomaly)
            shares = order.shares
        remaining = order.shares - shares
        book.reduce(order.side, order.price, shares, remove_order=(remaining == 0))
        if remaining == 0:
            del self.orders[ref]
        else:
            self.orders[ref] = order._replace(shares=remaining)

    def _remove(self, ref: int, order: Order) -> None:
        self.instruments[order.locate].reduce(order.side, order.price, order.shares, True)
        del self.orders[ref]

    # -- messages -----------------------------------------------------------------------------

    def apply(self, buf: bytes) -> dict | None:
        """Apply one message block. Returns the decoded message, or None if it was skipped by
        the message checks (unknown type, short or empty block)."""
        self._count("messages")
        problem = check_message(buf)
        if problem in ("unknown_type", "short_message"):
            self._count(problem)
            return None
        if problem == "long_message":
            self._count("long_message")
        msg = decode_message(buf)
        mtype = msg["type"]
        self._count(f"type_{mtype}")
        handler = self._HANDLERS.get(mtype)
        if handler is not None:
            handler(self, msg)
        return msg

    def _on_R(self, msg: dict) -> None:
        locate = msg["stock_locate"]
        book = self.instruments.get(locate)
        if book is not None:
            book.symbol = msg["stock"]
            return
        if self.max_instruments is not None and len(self.instruments) >= self.max_instruments:
            self._count("instrument_capacity")
            return
        self.instruments[locate] = Book(locate, msg["stock"])

    def _on_H(self, msg: dict) -> None:
        book = self._book_for(msg["stock_locate"], msg["stock"])
        if book is not None:
            book.trading_state = msg["trading_state"]

    def _on_A(self, msg: dict) -> None:
        side = msg["buy_sell_indicator"]
        if side not in ("B", "S"):
            self._count("bad_side")
            return
        ref, shares = msg["order_reference_number"], msg["shares"]
        if not self._order_checks(ref, shares):
            return
        book = self._book_for(msg["stock_locate"], msg["stock"])
        if book is None:
            return
        self._insert(book, ref, side, msg["price"], shares)

    _on_F = _on_A

    def _on_E(self, msg: dict) -> None:
        ref = msg["order_reference_number"]
        order = self._find_order(msg, ref)
        if order is None:
            return
        self._take(ref, order, msg["executed_shares"], "overexecution")
        self.instruments[order.locate].last_trade = (order.price, msg["executed_shares"])

    def _on_C(self, msg: dict) -> None:
        ref = msg["order_reference_number"]
        order = self._find_order(msg, ref)
        if order is None:
            return
        self._take(ref, order, msg["executed_shares"], "overexecution")
        if msg["printable"] == "Y":
            self.instruments[order.locate].last_trade = (msg["execution_price"],
                                                         msg["executed_shares"])

    def _on_X(self, msg: dict) -> None:
        ref = msg["order_reference_number"]
        order = self._find_order(msg, ref)
        if order is None:
            return
        self._take(ref, order, msg["cancelled_shares"], "overcancel")

    def _on_D(self, msg: dict) -> None:
        ref = msg["order_reference_number"]
        order = self._find_order(msg, ref)
        if order is None:
            return
        self._remove(ref, order)

    def _on_U(self, msg: dict) -> None:
        old_ref = msg["original_order_reference_number"]
        order = self._find_order(msg, old_ref)
        if order is None:
            return
        self._remove(old_ref, order)
        new_ref, shares = msg["new_order_reference_number"], msg["shares"]
        if not self._order_checks(new_ref, shares):
            return
        self._insert(self.instruments[order.locate], new_ref, order.side, msg["price"], shares)

    def _on_P(self, msg: dict) -> None:
        book = self.instruments.get(msg["stock_locate"])
        if book is not None:
            book.last_trade = (msg["price"], msg["shares"])

    # Book-changing messages; every other type is only decoded and counted.
    _HANDLERS = {"R": _on_R, "H": _on_H, "A": _on_A, "F": _on_F, "E": _on_E, "C": _on_C,
                 "X": _on_X, "D": _on_D, "U": _on_U, "P": _on_P}

    # -- streams ------------------------------------------------------------------------------

    def apply_many(self, blocks: Iterable[bytes]) -> None:
        for block in blocks:
            self.apply(block)

    def apply_daily_file(self, path_or_bytes) -> "ReferenceBook":
        """Apply every block of a daily file (path or its bytes)."""
        self.apply_many(iter_daily_file(_read(path_or_bytes), self.counters))
        return self

    def apply_mold(self, payload: bytes) -> MoldDatagram:
        """Apply the messages of one MoldUDP64 datagram (no sequencing, no de-duplication)."""
        dgram = iter_mold(payload, self.counters)
        self.feed["datagrams"] += 1
        if dgram.header is not None:
            if dgram.header.count == MOLD_HEARTBEAT:
                self.feed["heartbeats"] += 1
            elif dgram.header.count == MOLD_END_OF_SESSION:
                self.feed["end_of_session"] += 1
        self.apply_many(dgram.messages)
        return dgram

    def apply_pcap(self, path) -> "ReferenceBook":
        """Apply every UDP datagram of a pcap, parsed as MoldUDP64, in capture order."""
        from handler.net.pcapfile import PcapReader
        reader = PcapReader(path)
        for dgram in reader.datagrams():
            self.apply_mold(dgram.payload)
        self.pcap_counters = dict(reader.counters)
        return self

    # -- views --------------------------------------------------------------------------------

    def books(self, depth: int | None = None) -> list[dict]:
        """The canonical dump objects of the non-empty books, sorted by locate."""
        return [self.instruments[locate].dump(depth)
                for locate in sorted(self.instruments)
                if not self.instruments[locate].is_empty()]

    dump = books

    def book(self, locate: int) -> Book | None:
        return self.instruments.get(locate)

    def trading_state(self, locate: int) -> str | None:
        book = self.instruments.get(locate)
        return None if book is None else book.trading_state

    def last_trade(self, locate: int) -> tuple[int, int] | None:
        book = self.instruments.get(locate)
        return None if book is None else book.last_trade


# --------------------------------------------------------------------------------------------
# Module-level helpers
# --------------------------------------------------------------------------------------------

def _read(path_or_bytes) -> bytes:
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return bytes(path_or_bytes)
    with open(os.fspath(path_or_bytes), "rb") as f:
        return f.read()


def apply_daily_file(path_or_bytes, **capacities) -> ReferenceBook:
    """A new ReferenceBook with every block of a daily file applied."""
    return ReferenceBook(**capacities).apply_daily_file(path_or_bytes)


def apply_pcap(path, **capacities) -> ReferenceBook:
    """A new ReferenceBook with every UDP datagram of a pcap applied as MoldUDP64."""
    return ReferenceBook(**capacities).apply_pcap(path)


def decode_daily_file(path_or_bytes, errors: list | None = None) -> Iterator[dict]:
    """The decoded messages of a daily file. Blocks that are not decoded are appended to
    ``errors`` as ``(offset, reason)``; a truncated tail as ``(offset, "truncated")``."""
    gen = iter_daily_blocks(_read(path_or_bytes))
    while True:
        try:
            offset, block = next(gen)
        except StopIteration as stop:
            if stop.value is not None and errors is not None:
                errors.append((stop.value, "truncated"))
            return
        try:
            yield decode_message(block)
        except DecodeError as exc:
            if errors is not None:
                errors.append((offset, exc.reason))


def decode_pcap(path, errors: list | None = None) -> Iterator[dict]:
    """The decoded messages of a MoldUDP64 pcap, each ending with ``session`` and ``sequence``
    (the datagram's sequence + the message's index in it). Problems are appended to ``errors``
    as ``(datagram index, message index or None, reason)``."""
    from handler.net.pcapfile import PcapReader
    for index, dgram in enumerate(PcapReader(path).datagrams()):
        mold = iter_mold(dgram.payload)
        if mold.malformed and errors is not None:
            errors.append((index, None, "mold_malformed"))
        if mold.header is None:
            continue
        for i, block in enumerate(mold.messages):
            try:
                msg = decode_message(block)
            except DecodeError as exc:
                if errors is not None:
                    errors.append((index, i, exc.reason))
                continue
            msg["session"] = mold.header.session
            msg["sequence"] = mold.header.sequence + i
            yield msg


def dump_lines(dumps: Iterable[dict]) -> str:
    """The JSON lines of ``fh book dump`` (one per book, each ending with a newline)."""
    return "".join(json.dumps(d) + "\n" for d in dumps)
