"""Unit tests of the reference model (handler/reference.py) and the pcap reader
(handler/pcapfile.py), plus a smoke test on the real captures in ../shared/data/real.

Every message here is built by hand with struct.pack from the ITCH 5.0 layouts, independently
of the code under test. Run: cd /work/main && python -m pytest tests/test_reference.py
"""

from __future__ import annotations

import json
import struct
from collections import Counter
from pathlib import Path

import pytest

from handler.net import pcapfile
from handler import reference as ref
from handler.net.pcapfile import PcapReader, read_udp
from handler.reference import DecodeError, ReferenceBook, decode_message

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real"

TS = 34_200_000_000_123          # 09:30:00.000000123 in ns since midnight (needs > 32 bits)


# ============================================================================================
# Hand-built ITCH 5.0 messages
# ============================================================================================

def header(mtype: str, locate: int = 1, tracking: int = 0, ts: int = TS) -> bytes:
    return struct.pack(">cHH", mtype.encode(), locate, tracking) + ts.to_bytes(6, "big")


def stock8(symbol: str) -> bytes:
    return symbol.encode("latin-1").ljust(8, b" ")


def msg_S(code=b"O", locate=0):
    return header("S", locate) + struct.pack(">c", code)


def msg_R(locate, symbol):
    return header("R", locate) + struct.pack(
        ">8sccIcc2scccccIc", stock8(symbol), b"Q", b"N", 100, b"N", b"C", b"Z ", b"P", b"N",
        b" ", b"1", b"N", 3, b" ")


def msg_H(locate, symbol, state, reason=b"    "):
    return header("H", locate) + struct.pack(">8scc4s", stock8(symbol), state, b" ", reason)


def msg_A(order_ref, side, shares, price, locate=1, symbol="AAPL"):
    return header("A", locate) + struct.pack(">QcI8sI", order_ref, side, shares,
                                             stock8(symbol), price)


def msg_F(order_ref, side, shares, price, locate=1, symbol="AAPL", attribution=b"GSCO"):
    return header("F", locate) + struct.pack(">QcI8sI4s", order_ref, side, shares,
                                             stock8(symbol), price, attribution)


def msg_E(order_ref, shares, locate=1, match=7):
    return header("E", locate) + struct.pack(">QIQ", order_ref, shares, match)


def msg_C(order_ref, shares, printable, price, locate=1, match=8):
    return header("C", locate) + struct.pack(">QIQcI", order_ref, shares, match, printable,
                                             price)


def msg_X(order_ref, shares, locate=1):
    return header("X", locate) + struct.pack(">QI", order_ref, shares)


def msg_D(order_ref, locate=1):
    return header("D", locate) + struct.pack(">Q", order_ref)


def msg_U(old_ref, new_ref, shares, price, locate=1):
    return header("U", locate) + struct.pack(">QQII", old_ref, new_ref, shares, price)


def msg_P(price, shares, locate=1, symbol="AAPL"):
    return header("P", locate) + struct.pack(">QcI8sIQ", 0, b"B", shares, stock8(symbol),
                                             price, 99)


def daily(*messages: bytes) -> bytes:
    return b"".join(struct.pack(">H", len(m)) + m for m in messages)


def mold(session: bytes, sequence: int, messages=(), count=None) -> bytes:
    if count is None:
        count = len(messages)
    return struct.pack(">10sQH", session, sequence, count) + daily(*messages)


# ============================================================================================
# decode_message: all 23 types, keys in order
# ============================================================================================

HDR = lambda t, loc=1: [("type", t), ("stock_locate", loc), ("tracking_number", 2),  # noqa: E731
                        ("timestamp", TS)]

DECODE_CASES = {
    "S": (12, struct.pack(">c", b"Q"), [("event_code", "Q")]),
    "R": (39, struct.pack(">8sccIcc2scccccIc", b"ZVZZT   ", b"Q", b"N", 100, b"N", b"C", b"Z ",
                          b"P", b"N", b" ", b"1", b"Y", 2, b"N"),
          [("stock", "ZVZZT"), ("market_category", "Q"), ("financial_status_indicator", "N"),
           ("round_lot_size", 100), ("round_lots_only", "N"), ("issue_classification", "C"),
           ("issue_sub_type", "Z"), ("authenticity", "P"),
           ("short_sale_threshold_indicator", "N"), ("ipo_flag", ""),
           ("luld_reference_price_tier", "1"), ("etp_flag", "Y"), ("etp_leverage_factor", 2),
           ("inverse_indicator", "N")]),
    "H": (25, struct.pack(">8scc4s", b"AAPL    ", b"H", b" ", b"LUDP"),
          [("stock", "AAPL"), ("trading_state", "H"), ("reserved", ""), ("reason", "LUDP")]),
    "Y": (20, struct.pack(">8sc", b"MSFT    ", b"1"),
          [("stock", "MSFT"), ("reg_sho_action", "1")]),
    "L": (26, struct.pack(">4s8sccc", b"GSCO", b"AAPL    ", b"Y", b"N", b"A"),
          [("mpid", "GSCO"), ("stock", "AAPL"), ("primary_market_maker", "Y"),
           ("market_maker_mode", "N"), ("market_participant_state", "A")]),
    "V": (35, struct.pack(">QQQ", 1_234_567_800_000_000, 2**63 + 5, 0),
          [("level_1", 1_234_567_800_000_000), ("level_2", 2**63 + 5), ("level_3", 0)]),
    "W": (12, struct.pack(">c", b"2"), [("breached_level", "2")]),
    "K": (28, struct.pack(">8sIcI", b"NEWCO   ", 34_200, b"A", 150_000),
          [("stock", "NEWCO"), ("ipo_quotation_release_time", 34_200),
           ("ipo_quotation_release_qualifier", "A"), ("ipo_price", 150_000)]),
    "J": (35, struct.pack(">8sIIII", b"AAPL    ", 1_000_000, 1_100_000, 900_000, 3),
          [("stock", "AAPL"), ("auction_collar_reference_price", 1_000_000),
           ("upper_auction_collar_price", 1_100_000), ("lower_auction_collar_price", 900_000),
           ("auction_collar_extension", 3)]),
    "h": (21, struct.pack(">8scc", b"AAPL    ", b"Q", b"H"),
          [("stock", "AAPL"), ("market_code", "Q"), ("operational_halt_action", "H")]),
    "A": (36, struct.pack(">QcI8sI", 2**64 - 1, b"B", 4_294_967_295, b"AAPL    ", 1_501_234),
          [("order_reference_number", 2**64 - 1), ("buy_sell_indicator", "B"),
           ("shares", 4_294_967_295), ("stock", "AAPL"), ("price", 1_501_234)]),
    "F": (40, struct.pack(">QcI8sI4s", 42, b"S", 300, b"BRK A   ", 4_294_967_295, b"VIRT"),
          [("order_reference_number", 42), ("buy_sell_indicator", "S"), ("shares", 300),
           ("stock", "BRK A"), ("price", 4_294_967_295), ("attribution", "VIRT")]),
    "E": (31, struct.pack(">QIQ", 42, 100, 123_456_789_012),
          [("order_reference_number", 42), ("executed_shares", 100),
           ("match_number", 123_456_789_012)]),
    "C": (36, struct.pack(">QIQcI", 42, 50, 77, b"N", 1_500_100),
          [("order_reference_number", 42), ("executed_shares", 50), ("match_number", 77),
           ("printable", "N"), ("execution_price", 1_500_100)]),
    "X": (23, struct.pack(">QI", 42, 25),
          [("order_reference_number", 42), ("cancelled_shares", 25)]),
    "D": (19, struct.pack(">Q", 42), [("order_reference_number", 42)]),
    "U": (35, struct.pack(">QQII", 42, 43, 200, 1_499_900),
          [("original_order_reference_number", 42), ("new_order_reference_number", 43),
           ("shares", 200), ("price", 1_499_900)]),
    "P": (44, struct.pack(">QcI8sIQ", 0, b"B", 100, b"AAPL    ", 1_500_000, 555),
          [("order_reference_number", 0), ("buy_sell_indicator", "B"), ("shares", 100),
           ("stock", "AAPL"), ("price", 1_500_000), ("match_number", 555)]),
    "Q": (40, struct.pack(">Q8sIQc", 2**40, b"AAPL    ", 1_500_000, 556, b"O"),
          [("shares", 2**40), ("stock", "AAPL"), ("cross_price", 1_500_000),
           ("match_number", 556), ("cross_type", "O")]),
    "B": (19, struct.pack(">Q", 556), [("match_number", 556)]),
    "I": (50, struct.pack(">QQc8sIIIcc", 10_000, 2_500, b"B", b"AAPL    ", 1_510_000,
                          1_505_000, 1_500_000, b"O", b" "),
          [("paired_shares", 10_000), ("imbalance_shares", 2_500), ("imbalance_direction", "B"),
           ("stock", "AAPL"), ("far_price", 1_510_000), ("near_price", 1_505_000),
           ("current_reference_price", 1_500_000), ("cross_type", "O"),
           ("price_variation_indicator", "")]),
    "N": (20, struct.pack(">8sc", b"AAPL    ", b"A"), [("stock", "AAPL"), ("interest_flag", "A")]),
    "O": (48, struct.pack(">8scIIIQII", b"AAPL    ", b"Y", 1_400_000, 1_600_000, 1_500_000,
                          34_200_000_000_000, 1_450_000, 1_550_000),
          [("stock", "AAPL"), ("open_eligibility_status", "Y"),
           ("minimum_allowable_price", 1_400_000), ("maximum_allowable_price", 1_600_000),
           ("near_execution_price", 1_500_000), ("near_execution_time", 34_200_000_000_000),
           ("lower_price_range_collar", 1_450_000), ("upper_price_range_collar", 1_550_000)]),
}


def test_decode_cases_cover_all_23_types():
    assert sorted(DECODE_CASES) == sorted("SRHYLVWKJhAFECXDUPQBINO")
    assert sorted(ref.MESSAGE_LENGTHS) == sorted(DECODE_CASES)


@pytest.mark.parametrize("mtype", list(DECODE_CASES))
def test_decode_every_type(mtype):
    length, body, fields = DECODE_CASES[mtype]
    buf = header(mtype, locate=1, tracking=2) + body
    assert len(buf) == length
    assert ref.MESSAGE_LENGTHS[mtype] == length
    decoded = decode_message(buf)
    assert list(decoded.items()) == HDR(mtype) + fields      # values and key order
    json.dumps(decoded)                                      # JSON-serialisable


@pytest.mark.parametrize("mtype", list(DECODE_CASES))
def test_decode_long_message_uses_known_prefix(mtype):
    length, body, fields = DECODE_CASES[mtype]
    buf = header(mtype, locate=1, tracking=2) + body
    assert decode_message(buf + b"\x01\x02\x03") == decode_message(buf)
    assert ref.check_message(buf + b"\x00") == "long_message"
    assert ref.check_message(buf) is None


@pytest.mark.parametrize("mtype", list(DECODE_CASES))
def test_decode_short_message_raises(mtype):
    length, body, _fields = DECODE_CASES[mtype]
    buf = header(mtype, locate=1, tracking=2) + body
    with pytest.raises(DecodeError) as exc:
        decode_message(buf[:-1])
    assert exc.value.reason == "short_message"
    assert isinstance(exc.value, ValueError)


def test_decode_header_fields_full_range():
    buf = struct.pack(">cHH", b"S", 65535, 65534) + (2**48 - 1).to_bytes(6, "big") + b"C"
    d = decode_message(buf)
    assert (d["stock_locate"], d["tracking_number"], d["timestamp"]) == (65535, 65534, 2**48 - 1)
    assert d["event_code"] == "C"


def test_decode_unknown_type_and_empty():
    with pytest.raises(DecodeError) as exc:
        decode_message(b"Z" + bytes(40))
    assert exc.value.reason == "unknown_type"
    with pytest.raises(DecodeError) as exc:
        decode_message(b"")
    assert exc.value.reason == "short_message"
    # lowercase letters other than "h" are unknown
    with pytest.raises(DecodeError) as exc:
        decode_message(b"a" + bytes(40))
    assert exc.value.reason == "unknown_type"


def test_decode_alpha_latin1_and_space_only_fields():
    buf = msg_A(1, b"B", 100, 10_000, symbol="\xe9T\xff")
    d = decode_message(buf)
    assert d["stock"] == "\xe9T\xff"
    assert json.dumps(d["stock"]) == '"\\u00e9T\\u00ff"'
    d = decode_message(header("S") + b" ")
    assert d["event_code"] == ""
    # only trailing spaces are stripped
    d = decode_message(header("Y") + struct.pack(">8sc", b" A B    ", b" "))
    assert d["stock"] == " A B"


def test_decode_accepts_memoryview_and_bytearray():
    buf = msg_D(9)
    assert decode_message(memoryview(buf)) == decode_message(bytearray(buf)) == decode_message(buf)


# ============================================================================================
# Framing: daily files
# ============================================================================================

def test_daily_file_blocks():
    data = daily(msg_S(), msg_D(1), b"")
    counters = {}
    blocks = list(ref.iter_daily_file(data, counters))
    assert blocks == [msg_S(), msg_D(1), b""]
    assert counters.get("truncated", 0) == 0


@pytest.mark.parametrize("cut", [1, 2, 3, 10])
def test_daily_file_truncated_tail(cut):
    whole = daily(msg_S(), msg_D(1))
    data = whole + daily(msg_D(2))[:cut]     # cut inside the length prefix or the body
    counters = {}
    assert list(ref.iter_daily_file(data, counters)) == [msg_S(), msg_D(1)]
    assert counters["truncated"] == 1
    blocks, tail = ref.split_daily_file(data)
    assert blocks == [msg_S(), msg_D(1)] and tail == len(whole)
    errors = []
    assert len(list(ref.decode_daily_file(data, errors))) == 2
    assert errors == [(len(whole), "truncated")]


def test_daily_file_truncated_counts_in_book():
    book = ref.apply_daily_file(daily(msg_A(1, b"B", 100, 10_000)) + b"\x00\x24A\x00")
    assert book.counters["truncated"] == 1
    assert book.counters["messages"] == 1
    assert book.books()[0]["bids"] == [[10_000, 100, 1]]


def test_daily_file_from_path(tmp_path):
    p = tmp_path / "x.NASDAQ_ITCH50"
    p.write_bytes(daily(msg_A(1, b"S", 5, 20_000)))
    assert ref.apply_daily_file(p).books()[0]["asks"] == [[20_000, 5, 1]]
    assert ref.apply_daily_file(str(p)).counters["type_A"] == 1


def test_decode_daily_file_reports_bad_blocks():
    data = daily(msg_S(), b"Zxx", msg_D(1)[:-2], b"", msg_D(3))
    errors = []
    decoded = list(ref.decode_daily_file(data, errors))
    assert [d["type"] for d in decoded] == ["S", "D"]
    assert errors == [(14, "unknown_type"), (19, "short_message"), (38, "short_message")]


# ============================================================================================
# Framing: MoldUDP64
# ============================================================================================

def test_mold_normal_datagram():
    dg = ref.iter_mold(mold(b"SESSION1  ", 1000, [msg_S(), msg_D(5)]))
    assert dg.header == ref.MoldHeader("SESSION1", 1000, 2)
    assert dg.messages == [msg_S(), msg_D(5)]
    assert dg.malformed is False
    header_, messages, malformed = dg          # unpacks as a 3-tuple
    assert header_.session == "SESSION1"


def test_mold_heartbeat_and_end_of_session():
    counters = {}
    hb = ref.iter_mold(mold(b"ABCDEFGHIJ", 77, count=0), counters)
    assert hb.header == ("ABCDEFGHIJ", 77, 0) and hb.messages == [] and not hb.malformed
    eos = ref.iter_mold(mold(b"ABCDEFGHIJ", 78, count=0xFFFF), counters)
    assert eos.header.count == ref.MOLD_END_OF_SESSION and eos.messages == []
    assert not eos.malformed
    assert counters.get("mold_malformed", 0) == 0

    book = ReferenceBook()
    book.apply_mold(mold(b"S         ", 1, count=0))
    book.apply_mold(mold(b"S         ", 1, count=0xFFFF))
    assert book.feed == {"datagrams": 2, "heartbeats": 1, "end_of_session": 1}
    assert book.counters["messages"] == 0 and book.counters["mold_malformed"] == 0


@pytest.mark.parametrize("payload", [b"", b"SESSION   ", mold(b"SESSION   ", 1, count=0)[:19]])
def test_mold_too_short(payload):
    counters = {}
    dg = ref.iter_mold(payload, counters)
    assert dg.header is None and dg.messages == [] and dg.malformed
    assert counters["mold_malformed"] == 1


def test_mold_blocks_do_not_fit_apply_the_ones_that_do():
    a1, a2 = msg_A(1, b"B", 100, 10_000), msg_A(2, b"B", 100, 10_100)
    # count says 3 but only 2 blocks follow
    payload = mold(b"S         ", 5, [a1, a2], count=3)
    counters = {}
    dg = ref.iter_mold(payload, counters)
    assert dg.messages == [a1, a2] and dg.malformed and counters["mold_malformed"] == 1
    # the second block's body is cut
    payload = mold(b"S         ", 5, [a1, a2])[:-1]
    book = ReferenceBook()
    book.apply_mold(payload)
    assert book.counters["mold_malformed"] == 1
    assert book.counters["messages"] == 1
    assert book.books()[0]["bids"] == [[10_000, 100, 1]]
    # the length prefix of the second block is cut
    payload = mold(b"S         ", 5, [a1], count=2) + b"\x00"
    dg = ref.iter_mold(payload)
    assert dg.messages == [a1] and dg.malformed


# ============================================================================================
# Book rules
# ============================================================================================

def book_of(*messages, **capacities) -> ReferenceBook:
    book = ReferenceBook(**capacities)
    for m in messages:
        book.apply(m)
    return book


def anomalies(book: ReferenceBook) -> dict:
    return {k: v for k, v in book.counters.items()
            if v and k != "messages" and not k.startswith("type_")}


def test_counter_names():
    book = ReferenceBook()
    expected = ["messages", "unknown_type", "short_message", "long_message", "truncated",
                "mold_malformed", "unknown_locate", "instrument_capacity", "bad_side",
                "zero_shares", "duplicate_ref", "unknown_ref", "overexecution", "overcancel",
                "locate_mismatch", "order_capacity", "level_capacity"]
    expected += [f"type_{t}" for t in "SRHYLVWKJhAFECXDUPQBINO"]
    assert sorted(book.counters) == sorted(expected)
    assert all(v == 0 for v in book.counters.values())


def test_add_levels_and_dump_order():
    book = book_of(
        msg_R(7, "MSFT"),
        msg_A(1, b"B", 100, 10_000, locate=7),
        msg_A(2, b"B", 50, 10_000, locate=7),
        msg_F(3, b"B", 10, 10_100, locate=7),
        msg_A(4, b"S", 30, 10_300, locate=7),
        msg_F(5, b"S", 40, 10_200, locate=7),
        msg_A(6, b"S", 1, 10_200, locate=7),
        msg_R(3, "AAPL"),
        msg_A(7, b"S", 9, 99, locate=3),
        msg_R(5, "EMPTY"),
    )
    assert book.books() == [
        {"locate": 3, "symbol": "AAPL", "bids": [], "asks": [[99, 9, 1]]},
        {"locate": 7, "symbol": "MSFT", "bids": [[10_100, 10, 1], [10_000, 150, 2]],
         "asks": [[10_200, 41, 2], [10_300, 30, 1]]},
    ]
    assert book.dump(depth=1)[1] == {"locate": 7, "symbol": "MSFT", "bids": [[10_100, 10, 1]],
                                     "asks": [[10_200, 41, 2]]}
    assert list(book.books()[0]) == ["locate", "symbol", "bids", "asks"]
    assert ref.dump_lines(book.books(depth=1)) == (
        '{"locate": 3, "symbol": "AAPL", "bids": [], "asks": [[99, 9, 1]]}\n'
        '{"locate": 7, "symbol": "MSFT", "bids": [[10100, 10, 1]], "asks": [[10200, 41, 2]]}\n')
    assert ref.dump_lines([]) == ""
    assert anomalies(book) == {}
    assert book.counters["messages"] == 10
    assert book.counters["type_A"] == 5 and book.counters["type_F"] == 2
    assert book.counters["type_R"] == 3


def test_R_creates_book_and_later_R_updates_symbol():
    book = book_of(msg_R(9, "OLD"))
    assert book.book(9).symbol == "OLD" and book.trading_state(9) == "T"
    assert book.books() == []                               # empty books are not dumped
    book.apply(msg_R(9, "NEW"))
    book.apply(msg_A(1, b"B", 1, 1, locate=9, symbol="IGNORED"))
    assert book.books()[0]["symbol"] == "NEW"
    assert anomalies(book) == {}


def test_unknown_locate_auto_create_from_A_F_H():
    book = book_of(msg_A(1, b"B", 100, 10_000, locate=11, symbol="ZVZZT"),
                   msg_F(2, b"S", 100, 10_100, locate=12, symbol="ZXZZT"),
                   msg_H(13, "ZWZZT", b"H"),
                   msg_A(3, b"B", 100, 10_000, locate=11, symbol="OTHER"))
    assert book.counters["unknown_locate"] == 3
    assert book.book(11).symbol == "ZVZZT" and book.book(12).symbol == "ZXZZT"
    assert book.book(13).symbol == "ZWZZT"
    assert book.trading_state(11) == "T" and book.trading_state(13) == "H"
    assert [d["locate"] for d in book.books()] == [11, 12]
    # an R after the auto-creation updates the symbol without counting
    book.apply(msg_R(11, "REAL"))
    assert book.book(11).symbol == "REAL" and book.counters["unknown_locate"] == 3


def test_trading_state():
    book = book_of(msg_R(1, "AAPL"))
    assert book.trading_state(1) == "T"
    for state in (b"H", b"P", b"Q", b"T"):
        book.apply(msg_H(1, "AAPL", state))
        assert book.trading_state(1) == state.decode()
    assert book.trading_state(2) is None
    assert book.counters["type_H"] == 4 and anomalies(book) == {}


def test_execute_partial_full_and_last_trade():
    book = book_of(msg_A(1, b"B", 100, 10_000), msg_A(2, b"B", 200, 10_000))
    assert book.last_trade(1) is None
    book.apply(msg_E(1, 30))
    assert book.books()[0]["bids"] == [[10_000, 270, 2]]
    assert book.last_trade(1) == (10_000, 30)
    book.apply(msg_E(1, 70))                                 # reaches 0: removed
    assert book.books()[0]["bids"] == [[10_000, 200, 1]]
    assert 1 not in book.orders
    book.apply(msg_E(2, 200))                                # last order: level gone
    assert book.books() == []
    assert book.last_trade(1) == (10_000, 200)
    book.apply(msg_E(1, 1))
    assert anomalies(book) == {"unknown_locate": 1, "unknown_ref": 1}


def test_overexecution_removes_order():
    book = book_of(msg_A(1, b"S", 100, 10_000), msg_A(2, b"S", 5, 10_000), msg_E(1, 101))
    assert book.counters["overexecution"] == 1
    assert book.books()[0]["asks"] == [[10_000, 5, 1]]
    assert 1 not in book.orders
    assert book.last_trade(1) == (10_000, 101)


def test_execute_with_price_printable_and_not():
    book = book_of(msg_A(1, b"B", 100, 10_000), msg_C(1, 10, b"Y", 10_050))
    assert book.last_trade(1) == (10_050, 10)
    assert book.books()[0]["bids"] == [[10_000, 90, 1]]
    book.apply(msg_C(1, 20, b"N", 10_070))                   # not printable: no last trade
    assert book.last_trade(1) == (10_050, 10)
    assert book.books()[0]["bids"] == [[10_000, 70, 1]]
    book.apply(msg_C(1, 71, b"N", 10_080))                   # overexecution, not printable
    assert book.counters["overexecution"] == 1 and book.books() == []
    assert book.last_trade(1) == (10_050, 10)
    book.apply(msg_C(1, 1, b"Y", 1))
    assert book.counters["unknown_ref"] == 1


def test_cancel_partial_exact_and_overcancel():
    book = book_of(msg_A(1, b"B", 100, 10_000), msg_A(2, b"B", 100, 9_900))
    book.apply(msg_X(1, 40))
    assert book.books()[0]["bids"] == [[10_000, 60, 1], [9_900, 100, 1]]
    book.apply(msg_X(1, 60))
    assert book.books()[0]["bids"] == [[9_900, 100, 1]] and 1 not in book.orders
    book.apply(msg_X(2, 500))
    assert book.counters["overcancel"] == 1 and book.books() == [] and not book.orders
    book.apply(msg_X(2, 1))
    assert book.counters["unknown_ref"] == 1
    assert book.last_trade(1) is None                        # cancels are not trades


def test_delete():
    book = book_of(msg_A(1, b"S", 100, 10_000), msg_A(2, b"S", 50, 10_000), msg_D(1))
    assert book.books()[0]["asks"] == [[10_000, 50, 1]]
    book.apply(msg_D(1))
    assert book.counters["unknown_ref"] == 1
    book.apply(msg_D(2))
    assert book.books() == [] and not book.orders


def test_replace():
    book = book_of(msg_A(1, b"S", 100, 10_000, locate=4, symbol="XYZ"),
                   msg_U(1, 2, 70, 10_100, locate=4))
    assert book.books() == [{"locate": 4, "symbol": "XYZ", "bids": [],
                             "asks": [[10_100, 70, 1]]}]
    assert 1 not in book.orders
    assert book.orders[2] == ref.Order(4, "S", 10_100, 70)
    book.apply(msg_U(2, 2, 30, 10_200, locate=4))            # new ref == original ref is fine
    assert book.books()[0]["asks"] == [[10_200, 30, 1]]
    assert anomalies(book) == {"unknown_locate": 1}
    assert book.counters["type_U"] == 2


def test_replace_unknown_ref_does_nothing_else():
    book = book_of(msg_A(1, b"B", 100, 10_000), msg_U(5, 6, 100, 10_000))
    assert book.counters["unknown_ref"] == 1
    assert 6 not in book.orders and book.books()[0]["bids"] == [[10_000, 100, 1]]


def test_replace_duplicate_new_ref_leaves_original_removed():
    book = book_of(msg_A(1, b"B", 100, 10_000), msg_A(2, b"B", 10, 9_000), msg_U(1, 2, 50, 10_500))
    assert book.counters["duplicate_ref"] == 1
    assert 1 not in book.orders
    assert book.orders[2] == ref.Order(1, "B", 9_000, 10)
    assert book.books()[0]["bids"] == [[9_000, 10, 1]]


def test_replace_zero_shares_leaves_original_removed():
    book = book_of(msg_A(1, b"B", 100, 10_000), msg_U(1, 2, 0, 10_500))
    assert book.counters["zero_shares"] == 1
    assert not book.orders and book.books() == []


def test_replace_keeps_side_and_locate_of_original():
    book = book_of(msg_A(1, b"B", 100, 10_000, locate=1),
                   msg_A(2, b"S", 100, 20_000, locate=2, symbol="OTHER"),
                   msg_U(1, 3, 10, 11_000, locate=2))      # message locate differs
    assert book.counters["locate_mismatch"] == 1
    assert book.orders[3] == ref.Order(1, "B", 11_000, 10)
    assert book.books()[0] == {"locate": 1, "symbol": "AAPL", "bids": [[11_000, 10, 1]],
                               "asks": []}
    assert book.books()[1]["asks"] == [[20_000, 100, 1]]


def test_locate_mismatch_applies_to_order_book():
    book = book_of(msg_A(1, b"B", 100, 10_000, locate=1),
                   msg_R(2, "OTHER"),
                   msg_E(1, 10, locate=2),
                   msg_C(1, 10, b"Y", 10_001, locate=2),
                   msg_X(1, 10, locate=2))
    assert book.counters["locate_mismatch"] == 3
    assert book.books() == [{"locate": 1, "symbol": "AAPL", "bids": [[10_000, 70, 1]],
                             "asks": []}]
    assert book.last_trade(1) == (10_001, 10) and book.last_trade(2) is None
    book.apply(msg_D(1, locate=2))
    assert book.counters["locate_mismatch"] == 4 and book.books() == []
    book.apply(msg_D(1, locate=2))                           # unknown: no mismatch counted
    assert book.counters["locate_mismatch"] == 4 and book.counters["unknown_ref"] == 1


def test_bad_side_zero_shares_duplicate_ref():
    book = book_of(msg_A(1, b"X", 100, 10_000, locate=3),
                   msg_F(2, b" ", 100, 10_000, locate=3),
                   msg_A(3, b"B", 0, 10_000, locate=3))
    assert anomalies(book) == {"bad_side": 2, "zero_shares": 1}
    assert book.book(3) is None                              # skipped messages create no book
    book.apply(msg_A(4, b"B", 100, 10_000))
    book.apply(msg_F(4, b"S", 7, 12_000))
    assert book.counters["duplicate_ref"] == 1
    assert book.books()[0]["bids"] == [[10_000, 100, 1]] and book.books()[0]["asks"] == []
    assert book.counters["type_A"] == 3 and book.counters["type_F"] == 2


def test_instrument_capacity():
    book = book_of(msg_R(1, "ONE"), msg_R(2, "TWO"), max_instruments=1)
    assert book.counters["instrument_capacity"] == 1 and book.book(2) is None
    book.apply(msg_R(1, "UNO"))                              # update: no capacity needed
    book.apply(msg_A(1, b"B", 10, 100, locate=3))
    book.apply(msg_H(4, "FOUR", b"H"))
    assert book.counters["instrument_capacity"] == 3
    assert book.counters["unknown_locate"] == 0
    assert 1 not in book.orders and set(book.instruments) == {1}
    book.apply(msg_A(1, b"B", 10, 100, locate=1))
    assert book.books() == [{"locate": 1, "symbol": "UNO", "bids": [[100, 10, 1]], "asks": []}]


def test_order_capacity():
    book = book_of(msg_A(1, b"B", 10, 100), msg_A(2, b"B", 10, 100), msg_F(3, b"S", 10, 200),
                   max_orders=2)
    assert book.counters["order_capacity"] == 1 and set(book.orders) == {1, 2}
    book.apply(msg_D(1))
    book.apply(msg_F(3, b"S", 10, 200))
    assert book.counters["order_capacity"] == 1 and set(book.orders) == {2, 3}
    book.apply(msg_U(2, 4, 5, 150))                          # replace frees one slot first
    assert book.counters["order_capacity"] == 1 and set(book.orders) == {3, 4}
    assert book.books()[0] == {"locate": 1, "symbol": "AAPL", "bids": [[150, 5, 1]],
                               "asks": [[200, 10, 1]]}


def test_order_capacity_unknown_locate_creates_no_book():
    book = book_of(msg_A(1, b"B", 10, 100, locate=1), msg_A(2, b"B", 10, 100, locate=2),
                   max_orders=1)
    assert book.counters["order_capacity"] == 1 and book.book(2) is None
    assert book.counters["unknown_locate"] == 1


def test_references_are_global_across_instruments():
    book = book_of(msg_A(1, b"B", 10, 100, locate=1), msg_A(1, b"B", 10, 100, locate=2))
    assert book.counters["duplicate_ref"] == 1


def test_unknown_type_short_empty_and_long_messages():
    book = ReferenceBook()
    book.apply(b"Z" + bytes(30))
    book.apply(msg_A(1, b"B", 10, 100)[:-1])
    book.apply(b"")
    book.apply(msg_A(2, b"B", 10, 100) + b"extra")
    book.apply(msg_D(2) + b"\x00")
    book.apply(msg_A(3, b"S", 10, 300) + b"!")
    assert anomalies(book) == {"unknown_type": 1, "short_message": 2, "long_message": 3,
                               "unknown_locate": 1}
    assert book.counters["messages"] == 6
    assert book.counters["type_A"] == 2 and book.counters["type_D"] == 1
    assert book.books() == [{"locate": 1, "symbol": "AAPL", "bids": [], "asks": [[300, 10, 1]]}]
    typed = sum(v for k, v in book.counters.items() if k.startswith("type_"))
    assert book.counters["messages"] == typed + 1 + 2


def test_P_sets_last_trade_only():
    book = book_of(msg_A(1, b"B", 10, 100), msg_P(150, 300))
    assert book.last_trade(1) == (150, 300)
    assert book.books()[0]["bids"] == [[100, 10, 1]]
    book.apply(msg_P(150, 300, locate=99))                   # no book: nothing happens
    assert book.book(99) is None and anomalies(book) == {"unknown_locate": 1}


@pytest.mark.parametrize("mtype", [t for t in DECODE_CASES if t not in "RHAFECXDUP"])
def test_other_types_counted_no_book_change(mtype):
    _length, body, _fields = DECODE_CASES[mtype]
    book = book_of(msg_A(1, b"B", 10, 100))
    before = book.books()
    book.apply(header(mtype, locate=1) + body)
    book.apply(header(mtype, locate=500) + body)
    assert book.books() == before
    assert book.counters[f"type_{mtype}"] == 2
    assert book.book(500) is None and anomalies(book) == {"unknown_locate": 1}
    assert book.last_trade(1) is None


def levels_from_orders(book: ReferenceBook) -> list[dict]:
    """The dump recomputed naively from the live orders."""
    agg: dict = {}
    for o in book.orders.values():
        level = agg.setdefault(o.locate, {"B": {}, "S": {}})[o.side].setdefault(o.price, [0, 0])
        level[0] += o.shares
        level[1] += 1
    out = []
    for locate in sorted(agg):
        bids = [[p, s, n] for p, (s, n) in sorted(agg[locate]["B"].items(), reverse=True)]
        asks = [[p, s, n] for p, (s, n) in sorted(agg[locate]["S"].items())]
        out.append({"locate": locate, "symbol": book.book(locate).symbol, "bids": bids,
                    "asks": asks})
    return out


def test_random_stream_levels_match_orders():
    import random
    rng = random.Random(20191230)
    book = ReferenceBook(max_orders=20, max_instruments=4)
    for i in range(5000):
        kind = rng.choice("AAAFEECXXDUUPH")
        locate = rng.randint(1, 5)
        r1, r2 = rng.randint(1, 80), rng.randint(1, 80)
        shares, price = rng.choice([0, 1, 50, 100, 300]), rng.randint(99, 104) * 100
        side = rng.choice([b"B", b"S", b"B", b"S", b"?"])
        m = {"A": lambda: msg_A(r1, side, shares, price, locate, f"S{locate}"),
             "F": lambda: msg_F(r1, side, shares, price, locate, f"S{locate}"),
             "E": lambda: msg_E(r1, shares, locate),
             "C": lambda: msg_C(r1, shares, rng.choice([b"Y", b"N"]), price, locate),
             "X": lambda: msg_X(r1, shares, locate),
             "D": lambda: msg_D(r1, locate),
             "U": lambda: msg_U(r1, r2, shares, price, locate),
             "P": lambda: msg_P(price, shares, locate),
             "H": lambda: msg_H(locate, f"S{locate}", rng.choice([b"H", b"T"]))}[kind]()
        book.apply(m)
        assert book.books() == levels_from_orders(book), i
        assert len(book.orders) <= 20 and len(book.instruments) <= 4
    c = book.counters
    assert c["messages"] == 5000
    for name in ("unknown_ref", "duplicate_ref", "bad_side", "zero_shares", "overexecution",
                 "overcancel", "locate_mismatch", "order_capacity", "instrument_capacity"):
        assert c[name] > 0, name


def test_apply_returns_decoded_message():
    book = ReferenceBook()
    assert book.apply(msg_D(1))["type"] == "D"
    assert book.apply(b"") is None and book.apply(b"Z") is None


# ============================================================================================
# pcap files built by hand
# ============================================================================================

def ipv4(payload: bytes, proto: int = 17, flags_frag: int = 0x4000, src=b"\x0a\x00\x00\x01",
         dst=b"\xe9\x36\x0c\x6f", options: bytes = b"", version: int = 4,
         total_len: int | None = None) -> bytes:
    ihl = 5 + len(options) // 4
    if total_len is None:
        total_len = 4 * ihl + len(payload)
    return struct.pack(">BBHHHBBH4s4s", (version << 4) | ihl, 0, total_len, 1, flags_frag, 64,
                       proto, 0, src, dst) + options + payload


def udp(payload: bytes, sport=49653, dport=26477, length: int | None = None) -> bytes:
    if length is None:
        length = 8 + len(payload)
    return struct.pack(">HHHH", sport, dport, length, 0) + payload


def ether(l3: bytes, ethertype=0x0800, vlans=(), pad_to=60) -> bytes:
    tags = b""
    types = [tpid for tpid, _vid in vlans] + [ethertype]
    frame = b"\x01\x00\x5e\x36\x0c\x6f" + b"\x00\x11\x22\x33\x44\x55" + struct.pack(">H", types[0])
    for i, (_tpid, vid) in enumerate(vlans):
        tags += struct.pack(">HH", vid, types[i + 1])
    frame += tags + l3
    return frame.ljust(pad_to, b"\x00")


def pcap(records, nanosecond=True, big_endian=False, linktype=1) -> bytes:
    e = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    out = struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)
    for ts_sec, ts_frac, frame in records:
        out += struct.pack(e + "IIII", ts_sec, ts_frac, len(frame), len(frame)) + frame
    return out


def write(tmp_path, data: bytes, name="t.pcap") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def zero_counters(**nonzero):
    c = {name: 0 for name in pcapfile.COUNTER_NAMES}
    c.update(nonzero)
    return c


PAYLOAD = mold(b"SESSION1  ", 41, [msg_A(1, b"B", 100, 10_000)])


@pytest.mark.parametrize("nanosecond", [True, False])
@pytest.mark.parametrize("big_endian", [False, True])
def test_pcap_magic_byte_order_and_timestamps(tmp_path, nanosecond, big_endian):
    frame = ether(ipv4(udp(PAYLOAD)))
    frac = 123_456_789 if nanosecond else 123_456
    p = write(tmp_path, pcap([(1_692_700_000, frac, frame)], nanosecond, big_endian))
    reader = PcapReader(p)
    assert reader.nanosecond is nanosecond
    assert reader.byteorder == ("big" if big_endian else "little")
    assert reader.linktype == 1
    [dg] = list(reader.datagrams())
    expect_ns = 1_692_700_000 * 10**9 + (123_456_789 if nanosecond else 123_456_000)
    assert dg == pcapfile.Datagram(expect_ns, "10.0.0.1", "233.54.12.111", 49653, 26477,
                                   PAYLOAD, None)
    assert reader.counters == zero_counters(frames=1, datagrams=1)


def test_pcap_vlan_tags_and_padding(tmp_path):
    small = b"\x00" * 20                                     # heartbeat-sized: frame is padded
    frames = [
        ether(ipv4(udp(PAYLOAD)), vlans=[(0x8100, 141)]),
        ether(ipv4(udp(small)), vlans=[(0x8100, 0x2000 | 142)]),      # PCP bits ignored
        ether(ipv4(udp(PAYLOAD)), vlans=[(0x88A8, 100), (0x8100, 200)]),
        ether(ipv4(udp(small))),
    ]
    p = write(tmp_path, pcap([(1, i, f) for i, f in enumerate(frames)]))
    dgs, counters = read_udp(p)
    assert [d.vlan for d in dgs] == [141, 142, 100, None]
    assert [d.payload for d in dgs] == [PAYLOAD, small, PAYLOAD, small]
    assert counters == zero_counters(frames=4, datagrams=4)


def test_pcap_ip_options(tmp_path):
    frame = ether(ipv4(udp(PAYLOAD, sport=1, dport=2), options=b"\x01\x01\x01\x00"))
    dgs, counters = read_udp(write(tmp_path, pcap([(0, 0, frame)])))
    assert [(d.sport, d.dport, d.payload) for d in dgs] == [(1, 2, PAYLOAD)]


def test_pcap_drops_are_counted_by_cause(tmp_path):
    good = ether(ipv4(udp(PAYLOAD)))
    frames = [
        good,
        ether(ipv4(udp(PAYLOAD), flags_frag=0x2000)),         # MF: first fragment
        ether(ipv4(b"\x00" * 16, flags_frag=0x0010)),         # offset != 0
        ether(ipv4(b"\x00" * 20, proto=6)),                   # TCP
        ether(b"\x00" * 28, ethertype=0x0806),                # ARP
        ether(b"\x60" + b"\x00" * 60, ethertype=0x86DD),      # IPv6
        ether(ipv4(udp(PAYLOAD), version=6)),                 # IPv6 version in an IPv4 frame
        ether(ipv4(udp(PAYLOAD))[:0] + struct.pack(">B", 0x44) + bytes(39)),   # IHL 4
        ether(ipv4(udp(PAYLOAD, length=8 + len(PAYLOAD) + 1))),    # UDP longer than IP
        ether(ipv4(udp(PAYLOAD, length=7))),                  # UDP shorter than its header
        ether(ipv4(udp(PAYLOAD)))[:40],                       # snaplen-cut: IP runs past frame
        b"\x01\x00\x5e\x36\x0c\x6f\x00\x11",                  # not even an Ethernet header
        ether(b"", vlans=[(0x8100, 1)], pad_to=0)[:16],       # VLAN tag cut
        good,
    ]
    dgs, counters = read_udp(write(tmp_path, pcap([(0, i, f) for i, f in enumerate(frames)])))
    assert len(dgs) == 2 and all(d.payload == PAYLOAD for d in dgs)
    assert counters == zero_counters(frames=14, datagrams=2, ip_fragment=2, not_udp=1,
                                     not_ipv4=2, bad_ip_header=2, bad_udp_length=2,
                                     truncated_frame=3)


@pytest.mark.parametrize("cut", [1, 8, 15, 16, 17, 40])
def test_pcap_truncated_last_record(tmp_path, cut):
    frame = ether(ipv4(udp(PAYLOAD)))
    whole = pcap([(0, 0, frame), (0, 1, frame)])
    data = whole[:len(whole) - (16 + len(frame)) + cut]      # cut inside the 2nd record
    dgs, counters = read_udp(write(tmp_path, data))
    assert len(dgs) == 1
    assert counters == zero_counters(frames=1, datagrams=1, truncated_file=1)


def test_pcap_empty_capture(tmp_path):
    dgs, counters = read_udp(write(tmp_path, pcap([])))
    assert dgs == [] and counters == zero_counters()


def test_pcap_linux_sll(tmp_path):
    sll = struct.pack(">HHH8sH", 0, 1, 6, b"\x00\x11\x22\x33\x44\x55\x00\x00", 0x0800)
    frames = [sll + ipv4(udp(PAYLOAD)),
              struct.pack(">HHH8sH", 0, 1, 6, bytes(8), 0x86DD) + bytes(40),
              sll[:10]]
    p = write(tmp_path, pcap([(0, 0, f) for f in frames], linktype=113))
    dgs, counters = read_udp(p)
    assert [(d.payload, d.vlan) for d in dgs] == [(PAYLOAD, None)]
    assert counters == zero_counters(frames=3, datagrams=1, not_ipv4=1, truncated_frame=1)


def test_pcap_rejects_non_pcap(tmp_path):
    pcapng = write(tmp_path, b"\x0a\x0d\x0d\x0a" + bytes(40), "x.pcapng")
    with pytest.raises(ValueError, match="pcapng is not supported: convert with "
                                         "`editcap -F pcap IN OUT`"):
        PcapReader(pcapng)
    junk = write(tmp_path, b"this is not a capture at all", "junk.pcap")
    with pytest.raises(ValueError, match="junk.pcap"):
        PcapReader(junk)
    empty = write(tmp_path, b"", "empty.pcap")
    with pytest.raises(ValueError, match="empty.pcap"):
        read_udp(empty)
    short = write(tmp_path, pcap([])[:20], "short.pcap")
    with pytest.raises(ValueError, match="short.pcap"):
        PcapReader(short)
    wifi = write(tmp_path, pcap([], linktype=105), "wifi.pcap")
    with pytest.raises(ValueError, match="link type 105"):
        PcapReader(wifi)


def test_apply_pcap_and_decode_pcap(tmp_path):
    dg1 = mold(b"SESS      ", 100, [msg_A(1, b"B", 100, 10_000), msg_A(2, b"S", 50, 10_100)])
    dg2 = mold(b"SESS      ", 102, count=0)                  # heartbeat
    dg3 = mold(b"SESS      ", 102, [msg_E(1, 40), msg_X(2, 10)])
    dg4 = b"short"
    frames = [ether(ipv4(udp(d)), vlans=[(0x8100, 141)]) for d in (dg1, dg2, dg3, dg4)]
    frames.insert(1, ether(b"\x00" * 28, ethertype=0x0806))
    p = write(tmp_path, pcap([(0, i, f) for i, f in enumerate(frames)]))
    book = ref.apply_pcap(p)
    assert book.books() == [{"locate": 1, "symbol": "AAPL", "bids": [[10_000, 60, 1]],
                             "asks": [[10_100, 40, 1]]}]
    assert book.last_trade(1) == (10_000, 40)
    assert book.counters["mold_malformed"] == 1 and book.counters["messages"] == 4
    assert book.feed == {"datagrams": 4, "heartbeats": 1, "end_of_session": 0}
    assert book.pcap_counters == zero_counters(frames=5, datagrams=4, not_ipv4=1)
    errors = []
    decoded = list(ref.decode_pcap(p, errors))
    assert [(d["type"], d["session"], d["sequence"]) for d in decoded] == [
        ("A", "SESS", 100), ("A", "SESS", 101), ("E", "SESS", 102), ("X", "SESS", 103)]
    assert list(decoded[0])[-2:] == ["session", "sequence"]
    assert errors == [(3, None, "mold_malformed")]


@pytest.mark.slow
def test_pcap_reader_is_linear_enough(tmp_path):
    """~20 MB of capture must be read in well under a few seconds."""
    import time
    frame = ether(ipv4(udp(PAYLOAD)), vlans=[(0x8100, 141)])
    record = struct.pack("<IIII", 0, 0, len(frame), len(frame)) + frame
    n = 20_000_000 // len(record)
    p = write(tmp_path, pcap([]) + record * n)
    start = time.perf_counter()
    count = sum(1 for _ in PcapReader(p).datagrams())
    elapsed = time.perf_counter() - start
    assert count == n
    assert elapsed < 10, f"{n} frames took {elapsed:.1f} s"


# ============================================================================================
# Real captures (../shared/data/real, see its README.md)
# ============================================================================================

needs_real = pytest.mark.real_data

# file name part -> message type; more specific names first
PCAP_TYPES = [
    ("AddOrderNoMPID", "A"), ("AddOrderNoMpidAttribution", "A"),
    ("AddOrderWithMPID", "F"), ("AddOrderWithMpidAttribution", "F"),
    ("AddOrderMpidAttribution", "F"), ("NonCrossTrade", "P"), ("TradeMessageNon-cross", "P"),
    ("CrossTrade", "Q"), ("LULDAuctionCollar", "J"), ("MarketParticipantPosition", "L"),
    ("NetOrderImbalanceIndicator", "I"), ("OrderCancel", "X"), ("OrderDelete", "D"),
    ("OrderExecutedWithPrice", "C"), ("OrderExecuted", "E"), ("OrderReplace", "U"),
    ("RegSHORestriction", "Y"), ("RegShoShortSalePriceTestRestricted", "Y"),
    ("RetailInterest", "N"), ("StockTradingAction", "H"), ("SystemEvent", "S"),
]


def _expected_type(name: str) -> str | None:
    for part, mtype in PCAP_TYPES:
        if "__" + part in name:
            return mtype
    return None


@needs_real
def test_real_daily_files_decode():
    files = sorted((REAL / "itch").glob("*.NASDAQ_ITCH50"))
    assert len(files) == 3
    for path in files:
        errors = []
        decoded = list(ref.decode_daily_file(path, errors))
        for d in decoded:
            json.dumps(d)
        if path.name.startswith("truncated"):
            # The README says 15, but the file holds 16 whole blocks (S, R, H, Y ... ending at
            # byte 497) and a 17th R whose 39-byte body is cut after 1 byte.
            assert len(decoded) == 16
            assert errors == [(497, "truncated")]
            book = ref.apply_daily_file(path)
            assert book.counters["truncated"] == 1 and book.counters["messages"] == 16
        else:
            assert len(decoded) == 1000 and errors == []


@needs_real
def test_real_open_slice():
    book = ref.apply_daily_file(REAL / "itch" / "20191230_open_1000msgs.NASDAQ_ITCH50")
    c = book.counters
    assert (c["type_S"], c["type_R"], c["type_H"], c["type_Y"]) == (1, 993, 3, 3)
    assert anomalies(book) == {}
    assert len(book.instruments) == 993 and book.books() == []


@needs_real
def test_real_0930_slice_unknown_refs():
    book = ref.apply_daily_file(REAL / "itch" / "20191230_0930_1000msgs.NASDAQ_ITCH50")
    c = book.counters
    types = {t: c[f"type_{t}"] for t in "AUFDEXPQISC"}
    assert types == {"A": 367, "U": 225, "F": 193, "D": 167, "E": 28, "X": 6, "P": 4, "Q": 4,
                     "I": 4, "S": 1, "C": 1}
    assert c["messages"] == 1000
    assert c["unknown_ref"] == 399
    assert set(anomalies(book)) == {"unknown_ref", "unknown_locate"}
    dumps = book.books()
    assert dumps and ref.dump_lines(dumps).count("\n") == len(dumps)
    assert dumps == levels_from_orders(book)
    for d in dumps:
        assert [lvl[0] for lvl in d["bids"]] == sorted((lvl[0] for lvl in d["bids"]), reverse=True)
        assert [lvl[0] for lvl in d["asks"]] == sorted(lvl[0] for lvl in d["asks"])
        assert all(s > 0 and n > 0 for _p, s, n in d["bids"] + d["asks"])


@needs_real
def test_real_itch_pcaps():
    files = sorted(p for p in (REAL / "moldudp64").glob("*.pcap") if ".Itch.v5.0" in p.name)
    assert len(files) >= 40
    for path in files:
        dgs, counters = read_udp(path)
        assert dgs, path.name
        assert counters["datagrams"] == counters["frames"] == len(dgs)
        expected = _expected_type(path.name)
        types = Counter()
        for dg in dgs:
            assert dg.vlan in (141, 142), path.name
            mold_dg = ref.iter_mold(dg.payload)
            assert not mold_dg.malformed and mold_dg.header.count == len(mold_dg.messages)
            for block in mold_dg.messages:
                d = decode_message(block)
                json.dumps(d)
                types[d["type"]] += 1
        if expected is not None:
            assert set(types) == {expected}, path.name
        book = ref.apply_pcap(path)
        assert book.counters["messages"] == sum(types.values())
        assert book.counters["unknown_type"] == book.counters["short_message"] == 0
        assert book.counters["mold_malformed"] == 0


@needs_real
def test_real_multiple_packets_pcap():
    path = REAL / "moldudp64" / "Nasdaq.Equities.TotalView.Itch.v5.0__Multiple.Packets.pcap"
    reader = PcapReader(path)
    assert reader.nanosecond and reader.linktype == 1
    headers = [ref.iter_mold(dg.payload).header for dg in reader.datagrams()]
    assert headers == [("000010059B", 14764496, 1), ("000010059B", 19009117, 38)]
    decoded = list(ref.decode_pcap(path))
    assert len(decoded) == 39
    assert [d["sequence"] for d in decoded] == [14764496] + list(range(19009117, 19009117 + 38))
    assert Counter(d["type"] for d in decoded) == {"D": 1, "A": 36, "F": 2}


@needs_real
def test_real_heartbeat_pcap():
    path = REAL / "moldudp64" / "Ise.OrderComboFeed.v1.1__Heartbeat.pcap"
    reader = PcapReader(path)
    assert not reader.nanosecond
    dgs = list(reader.datagrams())
    assert len(dgs) == 1 and dgs[0].vlan is None
    for dg in dgs:                       # the payload protocol is not ITCH: only the framing
        mold_dg = ref.iter_mold(dg.payload)
        assert mold_dg.header == ("000008367I", 383265, 0)
        assert mold_dg.messages == [] and not mold_dg.malformed
