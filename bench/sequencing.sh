#!/usr/bin/env bash
# bench/sequencing.sh [ITCH_FILE] [MTU] [CONSUMER]: MoldUDP64 sequencing's instructions, counted by callgrind
# (repeatable). Figures: bench/sequencing.md.
#
# ITCH_FILE: a daily ITCH file (default pcaps/synth-100k.itch); MTU: default 340. fh-bench-mold cuts the day into
# datagrams filled to the MTU and hands each to fh_mold_feed_apply on the A line ("a"), or on A and at once its
# copy on B ("ab"), with the data plane's feed configuration and a consumer that does nothing. Only instructions
# inside fh_mold_feed_apply (and what it calls: the consumer's empty calls) are counted (--toggle-collect).
# Prints: instructions a message in order (A), a B datagram (its duplicate), and fh_mold_feed_apply's self cost.
# CONSUMER (fh-bench-mold --consumer): "checking" (the default: the consumer checks the framing, as the engine
# does in the data plane, so the feed's fast path does not walk the blocks), "none" (a consumer that trusts its
# blocks: the feed checks them first). Then, unless CONSUMER is given, sequencing and engine together in the
# same run: "engine" (the engine checks the framing in its walk) against "engine-blocks" (the feed checks, then
# fh_engine_apply_blocks), instructions a message, A only.
#
# Environment: FH_BENCH_PROGRAM (default: build/cp3*/native/bench/fh-bench-mold, built by meson).
set -euo pipefail
die() { echo "sequencing.sh: $*" >&2; exit 1; }
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DAY=${1:-$ROOT/pcaps/synth-100k.itch}
MTU=${2:-340}
CONSUMER=${3:-checking}
[[ -r $DAY ]] || die "cannot read $DAY"
source "$ROOT/bench/lib.sh"
PROGRAM=${FH_BENCH_PROGRAM:-$(bench_program fh-bench-mold)}
command -v valgrind >/dev/null || die "valgrind is not installed: apt-get install valgrind"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
declare -A IR
for mode in a ab; do
    valgrind --tool=callgrind --toggle-collect=fh_mold_feed_apply --callgrind-out-file="$TMP/cg.$mode" \
        "$PROGRAM" "$DAY" $mode --mtu "$MTU" --consumer "$CONSUMER" >"$TMP/out.$mode" 2>"$TMP/err.$mode" \
        || die "valgrind failed: $(grep -v '^==[0-9]*==' "$TMP/err.$mode" | tail -3)"
    IR[$mode]=$(grep -E '^(summary|totals):' "$TMP/cg.$mode" | head -1 | awk '{print $2}')
done
# every function (--threshold=100: the default leaves out the last 1 %), their .cold parts too
callgrind_annotate --threshold=100 "$TMP/cg.a" 2>/dev/null |
    grep -E ':(fh_mold_feed_apply|apply_next|apply_next_framed|apply_slow|block_slow)(\.cold)? ' >"$TMP/self.a" || true
if [[ -z ${3:-} ]]; then
    for c in engine engine-blocks; do
        valgrind --tool=callgrind --toggle-collect=fh_mold_feed_apply --callgrind-out-file="$TMP/cg.$c" \
            "$PROGRAM" "$DAY" a --mtu "$MTU" --consumer $c >"$TMP/out.$c" 2>"$TMP/err.$c" \
            || die "valgrind failed ($c): $(grep -v '^==[0-9]*==' "$TMP/err.$c" | tail -3)"
        IR[$c]=$(grep -E '^(summary|totals):' "$TMP/cg.$c" | head -1 | awk '{print $2}')
    done
else
    IR[engine]=0 IR[engine-blocks]=0
fi
python3 - "$TMP/out.a" "$TMP/out.ab" "${IR[a]}" "${IR[ab]}" "$TMP/self.a" "${IR[engine]}" "${IR[engine-blocks]}" <<'PY'
import json, sys
a, ab = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
ir_a, ir_ab = int(sys.argv[3]), int(sys.argv[4])
assert a["ok"] and ab["ok"], "not every message applied once (and every B copy counted a duplicate)"
self_a = sum(int(l.split()[0].replace(",", "")) for l in open(sys.argv[5]) if l.strip())
m, d = a["messages"], a["datagrams"]
ir_e, ir_eb = int(sys.argv[6]), int(sys.argv[7])
extra = {"with_engine_per_message": round(ir_e / m, 2), "with_engine_blocks_per_message": round(ir_eb / m, 2),
         "engine_ratio": round(ir_e / ir_eb, 4)} if ir_e else {}
print(json.dumps({"consumer": a["consumer"], "mtu": a["mtu"], "messages": m, "datagrams": d, "messages_per_datagram": round(m / d, 2),
                  "a_instructions_per_message": round(ir_a / m, 2),
                  "a_instructions_per_datagram": round(ir_a / d, 1),
                  "a_self_per_message": round(self_a / m, 2),
                  "b_instructions_per_datagram": round((ir_ab - ir_a) / d, 1), **extra}))
PY
