#!/usr/bin/env bash
# bench/replication_cost.sh [--rounds N] [--cores W,F] [ITCH_FILE]: the primary's cost of a standby, in the same
# session: the data plane's journal writer with and without a follower reading its ring concurrently, as
# fh-replicate --role primary does (fh/journal.h: loads only; the writer never waits for it nor knows it is
# there). fh-bench-journal runs the day (default pcaps/synth-100k.itch) through a MoldUDP64 feed into the
# engine and the journal tee, as the data plane applies it.
#   instructions  callgrind (repeatable) counts run_day() three times: the journal off, on, and on while a
#                 follower process (fh-bench-journal --follow, natively, on core F, napping 20 µs when it has read
#                 all there is) follows the same journal
#                 file; the follower's figure beside it says it read every message while the writer ran.
#   ns a message  the writer on core W, a follower thread on core F: N interleaved rounds of the three ways in a
#                 rotating order; the medians, and the ratio of the medians followed / on.
# Target (issue 14): the standby costs the data plane <= 5 ns and <= 10 instructions a message beyond the
# journal. Wall-clock figures need a quiet machine (the follower busy-polls core F during each followed run).
# Figures: bench/replication.md.
set -euo pipefail
die() { echo "replication_cost.sh: $*" >&2; exit 1; }
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DAY=$ROOT/pcaps/synth-100k.itch ROUNDS=31 CORES=0,1
while (($#)); do
    case $1 in
        --rounds) ROUNDS=${2:?}; shift 2 ;;
        --cores) CORES=${2:?}; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) DAY=$1; shift ;;
    esac
done
[[ -r $DAY ]] || die "cannot read $DAY"
[[ $CORES =~ ^([0-9]+),([0-9]+)$ ]] || die "--cores $CORES: two cores W,F (the writer's, the follower's)"
W=${BASH_REMATCH[1]} F=${BASH_REMATCH[2]}
ncpu=$(nproc)
((W < ncpu && F < ncpu)) || die "--cores $CORES: this machine has cores 0..$((ncpu - 1))"
[[ $W != "$F" ]] || die "--cores $CORES: the writer and the follower on two different cores"
[[ $ROUNDS =~ ^[0-9]+$ ]] && ((ROUNDS >= 1 && ROUNDS <= 1000)) || die "--rounds $ROUNDS: 1..1000"
source "$ROOT/bench/lib.sh"
PROGRAM=$(bench_program fh-bench-journal)
command -v valgrind >/dev/null || die "valgrind is not installed: apt-get install valgrind"
TMP=$(mktemp -d)
J=/dev/shm/fh-bench-cost-$$.journal
fpid=
cleanup() { [[ -z $fpid ]] || kill "$fpid" 2>/dev/null || true; rm -rf "$TMP"; rm -f "$J"; }
trap cleanup EXIT
echo "# $(date -u +%FT%TZ) $ncpu cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(basename "$DAY"), writer core $W, follower core $F"
ir() { grep -E '^(summary|totals):' "$1" | head -1 | awk '{print $2}'; }
cg() { # cg NAME ARGS...: run_day's instructions under callgrind
    local name=$1; shift
    valgrind --tool=callgrind --toggle-collect=run_day --callgrind-out-file="$TMP/cg.$name" "$PROGRAM" "$DAY" "$@" \
        >"$TMP/out.$name" 2>"$TMP/err.$name" || die "valgrind ($name) failed: $(tail -3 "$TMP/err.$name")"
}
cg off off
cg on on --journal "$J" --mb 64
rm -f "$J"
"$PROGRAM" --follow "$J" --core "$F" >"$TMP/follower" 2>"$TMP/err.follower" &
fpid=$!
cg followed on --journal "$J" --mb 64
wait "$fpid" || die "the follower failed: $(tail -2 "$TMP/err.follower")"
fpid=
"$PROGRAM" "$DAY" --rounds "$ROUNDS" --core "$W" --follower-core "$F" >"$TMP/rounds" || die "the timed rounds failed"
python3 - "$TMP" "$(ir "$TMP/cg.off")" "$(ir "$TMP/cg.on")" "$(ir "$TMP/cg.followed")" <<'PY'
import json, sys
tmp = sys.argv[1]
off, on, fol = (int(x) for x in sys.argv[2:5])
day = json.load(open(f"{tmp}/out.on"))
msgs = day["messages"]
f = json.load(open(f"{tmp}/follower"))
r = json.load(open(f"{tmp}/rounds"))
print(f"\n{msgs:,} messages in {day['datagrams']:,} datagrams; the follower process read {f['messages']:,} messages in "
      f"{f['records']:,} records ({f['overruns']} overruns) while the writer ran under callgrind")
print("| | journal off | journal on | on, followed | journal's own | the follower's (followed - on) |")
print("|---|---|---|---|---|---|")
print(f"| instructions (run_day) | {off:,} | {on:,} | {fol:,} | {on - off:,} | {fol - on:,} |")
print(f"| instructions a message | {off / msgs:.2f} | {on / msgs:.2f} | {fol / msgs:.2f} | {(on - off) / msgs:.2f} | "
      f"{(fol - on) / msgs:.2f} |")
print(f"| ns a message (median of {r['rounds']} interleaved rounds) | {r['ns_per_msg_off']:.2f} | {r['ns_per_msg_on']:.2f} | "
      f"{r['ns_per_msg_followed']:.2f} | {r['journal_ns_per_msg']:.2f} | {r['follower_ns_per_msg']:.2f} |")
print(f"\nratio of the medians, followed / on: {r['followed_over_on']:.4f}; the follower thread read "
      f"{r['follower_messages']:,} messages ({r['follower_overruns']} overruns, {r['follower_late']} runs not read to "
      f"the head within 1 s after)")
if fol != on:
    print(f"note: the follower changed the writer's instruction count by {fol - on:+,}")
PY
