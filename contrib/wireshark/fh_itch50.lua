-- fh_itch50.lua: a Wireshark / tshark dissector for NASDAQ TotalView-ITCH 5.0 carried in MoldUDP64.
--
-- Wireshark's own NASDAQ-ITCH dissector knows versions 2 to 4 and reads 5.0 messages wrongly; this one
-- decodes every message type of the 5.0 specification with the field names of `fh decode`
-- (docs/decode-format.md), so the two can be compared field by field.
--
--   tshark -X lua_script:contrib/wireshark/fh_itch50.lua -r capture.pcap -Y fh_itch50
--   wireshark -X lua_script:contrib/wireshark/fh_itch50.lua capture.pcap
--   (or copy it into ~/.local/lib/wireshark/plugins/)
--
-- It dissects UDP datagrams on the port in its preferences (26477 by default) and, as a heuristic, any UDP
-- datagram whose MoldUDP64 framing is exact (the header's count of blocks fills the payload to the byte and
-- every block is an ITCH 5.0 message at least as long as its type). Field values follow `fh decode`:
-- integers as integers, prices as integers in 1/10000 (1/10^8 for the MWCB levels), alpha fields with their
-- trailing spaces stripped.

local proto = Proto("fh_itch50", "MoldUDP64 + NASDAQ TotalView-ITCH 5.0 (fh)")

-- type -> { length, { {name, kind}, ... } } (after the 11-byte header); kinds: aN alpha of N bytes,
-- u16/u32/u64 integers, p4/p8 prices.
local TYPES = {
  S = {12, {{"event_code", "a1"}}},
  R = {39, {{"stock", "a8"}, {"market_category", "a1"}, {"financial_status_indicator", "a1"},
            {"round_lot_size", "u32"}, {"round_lots_only", "a1"}, {"issue_classification", "a1"},
            {"issue_sub_type", "a2"}, {"authenticity", "a1"}, {"short_sale_threshold_indicator", "a1"},
            {"ipo_flag", "a1"}, {"luld_reference_price_tier", "a1"}, {"etp_flag", "a1"},
            {"etp_leverage_factor", "u32"}, {"inverse_indicator", "a1"}}},
  H = {25, {{"stock", "a8"}, {"trading_state", "a1"}, {"reserved", "a1"}, {"reason", "a4"}}},
  Y = {20, {{"stock", "a8"}, {"reg_sho_action", "a1"}}},
  L = {26, {{"mpid", "a4"}, {"stock", "a8"}, {"primary_market_maker", "a1"}, {"market_maker_mode", "a1"},
            {"market_participant_state", "a1"}}},
  V = {35, {{"level_1", "p8"}, {"level_2", "p8"}, {"level_3", "p8"}}},
  W = {12, {{"breached_level", "a1"}}},
  K = {28, {{"stock", "a8"}, {"ipo_quotation_release_time", "u32"}, {"ipo_quotation_release_qualifier", "a1"},
            {"ipo_price", "p4"}}},
  J = {35, {{"stock", "a8"}, {"auction_collar_reference_price", "p4"}, {"upper_auction_collar_price", "p4"},
            {"lower_auction_collar_price", "p4"}, {"auction_collar_extension", "u32"}}},
  h = {21, {{"stock", "a8"}, {"market_code", "a1"}, {"operational_halt_action", "a1"}}},
  A = {36, {{"order_reference_number", "u64"}, {"buy_sell_indicator", "a1"}, {"shares", "u32"}, {"stock", "a8"},
            {"price", "p4"}}},
  F = {40, {{"order_reference_number", "u64"}, {"buy_sell_indicator", "a1"}, {"shares", "u32"}, {"stock", "a8"},
            {"price", "p4"}, {"attribution", "a4"}}},
  E = {31, {{"order_reference_number", "u64"}, {"executed_shares", "u32"}, {"match_number", "u64"}}},
  C = {36, {{"order_reference_number", "u64"}, {"executed_shares", "u32"}, {"match_number", "u64"},
            {"printable", "a1"}, {"execution_price", "p4"}}},
  X = {23, {{"order_reference_number", "u64"}, {"cancelled_shares", "u32"}}},
  D = {19, {{"order_reference_number", "u64"}}},
  U = {35, {{"original_order_reference_number", "u64"}, {"new_order_reference_number", "u64"}, {"shares", "u32"},
            {"price", "p4"}}},
  P = {44, {{"order_reference_number", "u64"}, {"buy_sell_indicator", "a1"}, {"shares", "u32"}, {"stock", "a8"},
            {"price", "p4"}, {"match_number", "u64"}}},
  Q = {40, {{"shares", "u64"}, {"stock", "a8"}, {"cross_price", "p4"}, {"match_number", "u64"}, {"cross_type", "a1"}}},
  B = {19, {{"match_number", "u64"}}},
  I = {50, {{"paired_shares", "u64"}, {"imbalance_shares", "u64"}, {"imbalance_direction", "a1"}, {"stock", "a8"},
            {"far_price", "p4"}, {"near_price", "p4"}, {"current_reference_price", "p4"}, {"cross_type", "a1"},
            {"price_variation_indicator", "a1"}}},
  N = {20, {{"stock", "a8"}, {"interest_flag", "a1"}}},
  O = {48, {{"stock", "a8"}, {"open_eligibility_status", "a1"}, {"minimum_allowable_price", "p4"},
            {"maximum_allowable_price", "p4"}, {"near_execution_price", "p4"}, {"near_execution_time", "u64"},
            {"lower_price_range_collar", "p4"}, {"upper_price_range_collar", "p4"}}},
}
local TYPE_NAMES = {
  S = "System Event", R = "Stock Directory", H = "Stock Trading Action", Y = "Reg SHO Restriction",
  L = "Market Participant Position", V = "MWCB Decline Level", W = "MWCB Status", K = "Quoting Period Update",
  J = "LULD Auction Collar", h = "Operational Halt", A = "Add Order", F = "Add Order with MPID",
  E = "Order Executed", C = "Order Executed with Price", X = "Order Cancel", D = "Order Delete", U = "Order Replace",
  P = "Trade (non-cross)", Q = "Cross Trade", B = "Broken Trade", I = "NOII", N = "Retail Price Improvement",
  O = "DLCR Price Discovery",
}
local SIZE = {a1 = 1, a2 = 2, a4 = 4, a8 = 8, u16 = 2, u32 = 4, u64 = 8, p4 = 4, p8 = 8}

local f = {
  session = ProtoField.string("fh_itch50.session", "Session"),
  seq = ProtoField.uint64("fh_itch50.mold_sequence", "Sequence of the first message"),
  count = ProtoField.uint16("fh_itch50.count", "Message count"),
  kind = ProtoField.string("fh_itch50.datagram", "Datagram"),
  sequence = ProtoField.uint64("fh_itch50.sequence", "Sequence"),
  length = ProtoField.uint16("fh_itch50.length", "Message length"),
  type = ProtoField.string("fh_itch50.type", "Message type"),
  stock_locate = ProtoField.uint16("fh_itch50.stock_locate", "Stock locate"),
  tracking_number = ProtoField.uint16("fh_itch50.tracking_number", "Tracking number"),
  timestamp = ProtoField.uint64("fh_itch50.timestamp", "Timestamp (ns since midnight)"),
}
-- A name with two widths (shares: u32 in A, F, U, P and u64 in Q) gets the wider field.
local wide = {}
for _, spec in pairs(TYPES) do
  for _, fk in ipairs(spec[2]) do
    if fk[2] == "u64" or fk[2] == "p8" then wide[fk[1]] = true end
  end
end
for _, spec in pairs(TYPES) do
  for _, fk in ipairs(spec[2]) do
    local name, kind = fk[1], fk[2]
    if wide[name] and kind:sub(1, 1) ~= "a" then kind = "u64" end
    if not f[name] then
      local label = name:gsub("_", " "):gsub("^%l", string.upper)
      if kind:sub(1, 1) == "a" then
        f[name] = ProtoField.string("fh_itch50." .. name, label)
      elseif kind == "u16" then
        f[name] = ProtoField.uint16("fh_itch50." .. name, label)
      elseif kind == "u32" or kind == "p4" then
        f[name] = ProtoField.uint32("fh_itch50." .. name, label)
      else
        f[name] = ProtoField.uint64("fh_itch50." .. name, label)
      end
    end
  end
end
local fields = {}
for _, v in pairs(f) do fields[#fields + 1] = v end
proto.fields = fields

local e_short = ProtoExpert.new("fh_itch50.short", "Message shorter than its type", expert.group.MALFORMED,
                                expert.severity.ERROR)
local e_unknown = ProtoExpert.new("fh_itch50.unknown", "Unknown ITCH 5.0 message type", expert.group.UNDECODED,
                                  expert.severity.WARN)
local e_framing = ProtoExpert.new("fh_itch50.framing", "Blocks do not match the message count",
                                  expert.group.MALFORMED, expert.severity.ERROR)
proto.experts = {e_short, e_unknown, e_framing}

proto.prefs.port = Pref.uint("UDP port", 26477, "the feed's UDP port (0: heuristic only)")

local function rstrip(s) return (s:gsub(" +$", "")) end

local function price_text(v, scale)
  local n = tonumber(tostring(v))
  if scale == 8 then return string.format("%.8f", n / 1e8) end
  return string.format("%.4f", n / 1e4)
end

-- Does buf look like MoldUDP64 carrying ITCH 5.0, to the byte?
local function exact(buf)
  local len = buf:len()
  if len < 20 then return false end
  local count = buf(18, 2):uint()
  if count == 0 or count == 0xFFFF then return len == 20 end
  local off = 20
  for _ = 1, count do
    if off + 2 > len then return false end
    local n = buf(off, 2):uint()
    if n < 1 or off + 2 + n > len then return false end
    local spec = TYPES[string.char(buf(off + 2, 1):uint())]
    if not spec or n < spec[1] then return false end
    off = off + 2 + n
  end
  return off == len
end

local function message(buf, tree, off, n, seq)
  local t = string.char(buf(off, 1):uint())
  local spec = TYPES[t]
  local sub = tree:add(proto, buf(off, n), string.format("Message %s: %s (%s)", tostring(seq), t,
                                                            TYPE_NAMES[t] or "unknown"))
  sub:add(f.sequence, buf(off, 0), seq)
  sub:add(f.length, buf(off - 2, 2))
  sub:add(f.type, buf(off, 1))
  if not spec then
    sub:add_proto_expert_info(e_unknown)
    return t
  end
  if n < spec[1] then
    sub:add_proto_expert_info(e_short)
    return t
  end
  sub:add(f.stock_locate, buf(off + 1, 2))
  sub:add(f.tracking_number, buf(off + 3, 2))
  sub:add(f.timestamp, buf(off + 5, 6), buf(off + 5, 6):uint64())
  local p = off + 11
  for _, fk in ipairs(spec[2]) do
    local name, kind = fk[1], fk[2]
    local r = buf(p, SIZE[kind])
    if kind:sub(1, 1) == "a" then
      local s = rstrip(r:raw())
      sub:add(f[name], r, s)
    elseif kind == "p4" then
      sub:add(f[name], r, r:uint(), string.format("%s: %s (%d)", name, price_text(r:uint(), 4), r:uint()))
    elseif kind == "p8" then
      local v = r:uint64()
      sub:add(f[name], r, v, string.format("%s: %s (%s)", name, price_text(v, 8), tostring(v)))
    elseif kind == "u64" or wide[name] then
      sub:add(f[name], r, r:uint64())
    else
      sub:add(f[name], r, r:uint())
    end
    p = p + SIZE[kind]
  end
  return t
end

function proto.dissector(buf, pinfo, tree)
  if buf:len() < 20 then return 0 end
  pinfo.cols.protocol = "ITCH 5.0"
  local top = tree:add(proto, buf(), "MoldUDP64 + ITCH 5.0")
  local session = buf(0, 10):raw()
  top:add(f.session, buf(0, 10), rstrip(session))
  local seq = buf(10, 8):uint64()
  top:add(f.seq, buf(10, 8), seq)
  top:add(f.count, buf(18, 2))
  local count = buf(18, 2):uint()
  if count == 0 then
    top:add(f.kind, buf(18, 2), "heartbeat")
    pinfo.cols.info = string.format("%s heartbeat, next %s", rstrip(session), tostring(seq))
    return buf:len()
  elseif count == 0xFFFF then
    top:add(f.kind, buf(18, 2), "end of session")
    pinfo.cols.info = string.format("%s end of session at %s", rstrip(session), tostring(seq))
    return buf:len()
  end
  top:add(f.kind, buf(18, 2), "data")
  local off, kinds = 20, {}
  for i = 0, count - 1 do
    if off + 2 > buf:len() then top:add_proto_expert_info(e_framing); break end
    local n = buf(off, 2):uint()
    if n < 1 or off + 2 + n > buf:len() then top:add_proto_expert_info(e_framing); break end
    kinds[#kinds + 1] = message(buf, top, off + 2, n, seq + i)
    off = off + 2 + n
  end
  if off ~= buf:len() then top:add_proto_expert_info(e_framing) end
  pinfo.cols.info = string.format("%s seq %s: %s", rstrip(session), tostring(seq), table.concat(kinds, " "))
  return buf:len()
end

local function heuristic(buf, pinfo, tree)
  if not exact(buf) then return false end
  proto.dissector(buf, pinfo, tree)
  return true
end
proto:register_heuristic("udp", heuristic)

local registered = 0
function proto.init()
  local udp = DissectorTable.get("udp.port")
  if registered ~= 0 then udp:remove(registered, proto) end
  registered = proto.prefs.port
  if registered ~= 0 then udp:add(registered, proto) end
end
