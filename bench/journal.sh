#!/usr/bin/env bash
# bench/journal.sh [ITCH_FILE]: the journal's cost on the hot path, in instructions per message counted by
# callgrind (repeatable), and in ns per message from the same program's wall clock (min of 5 repeats each,
# off and on alternated; indicative only on a shared machine). Figures: bench/journal.md.
#
# ITCH_FILE: a daily ITCH file (default pcaps/synth-100k.itch). fh-bench-journal cuts it into MoldUDP64
# datagrams of up to 1,400 bytes of blocks and applies them through a MoldUDP64 feed into the engine, once
# without the journal ("off") and once with the journal tee into a ring ("on"); callgrind counts only
# inside run_day() (--toggle-collect), so the difference is the journal's own cost.
#
# Environment: FH_BENCH_PROGRAM (default: build/cp3*/native/bench/fh-bench-journal, built by meson).
set -euo pipefail
die() { echo "journal.sh: $*" >&2; exit 1; }
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DAY=${1:-$ROOT/pcaps/synth-100k.itch}
[[ -r $DAY ]] || die "cannot read $DAY"
source "$ROOT/bench/lib.sh"
PROGRAM=${FH_BENCH_PROGRAM:-$(bench_program fh-bench-journal)}
command -v valgrind >/dev/null || die "valgrind is not installed: apt-get install valgrind"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
declare -A IR
for mode in off on; do
    valgrind --tool=callgrind --toggle-collect=run_day --callgrind-out-file="$TMP/cg.$mode" "$PROGRAM" "$DAY" $mode \
        >"$TMP/out.$mode" 2>"$TMP/err.$mode" || die "valgrind failed: $(tail -3 "$TMP/err.$mode")"
    IR[$mode]=$(grep -E '^(summary|totals):' "$TMP/cg.$mode" | head -1 | awk '{print $2}')
done
MSGS=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["messages"])' "$TMP/out.on")
DGRAMS=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["datagrams"])' "$TMP/out.on")
for i in 1 2 3; do
    "$PROGRAM" "$DAY" off --repeats 5 >>"$TMP/wall.off"
    "$PROGRAM" "$DAY" on --repeats 5 >>"$TMP/wall.on"
done
python3 - "$MSGS" "$DGRAMS" "${IR[off]}" "${IR[on]}" "$TMP/wall.off" "$TMP/wall.on" <<'PY'
import json, sys
msgs, dgrams, off, on = (int(x) for x in sys.argv[1:5])
woff = min(json.loads(l)["ns_per_msg_min"] for l in open(sys.argv[5]))
won = min(json.loads(l)["ns_per_msg_min"] for l in open(sys.argv[6]))
print(json.dumps({"messages": msgs, "datagrams": dgrams, "instructions_off": off, "instructions_on": on,
                  "journal_instructions_per_message": round((on - off) / msgs, 2),
                  "journal_instructions_per_datagram": round((on - off) / dgrams, 1),
                  "ns_per_message_off_min": woff, "ns_per_message_on_min": won,
                  "journal_ns_per_message": round(won - woff, 2)}))
PY
