#!/usr/bin/env bash
# bench/peer.sh PEER_DIR [MESSAGES] [INSTRUMENTS] [ROUNDS]: fh's book engine against
# charles-cooper/itch-order-book (C++), side by side in the same run, on the same days, on the same CPU.
#
#   PEER_DIR     a checkout of https://github.com/charles-cooper/itch-order-book (nothing of it is kept in
#                this repository: the script builds it aside, with the compiler line of its build.sh)
#   MESSAGES     messages in each day (default 2000000)
#   INSTRUMENTS  instruments in each day (default 8000)
#   ROUNDS       interleaved rounds (default 7): each round runs the peer, then fh, on each day shape
#
# Environment:
#   FH_BENCH_DIR   keep the generated days and the peer's binary here (default: a temporary directory)
#   FH_BENCH_CPU   the CPU both programs are pinned to (default 1)
#   FH_BENCH_SHAPES  the day shapes (default "uniform real real-late": fh synth itch --shape)
#   FH_BENCH_SEED  the days' seed (default 1, the days fh's engine was tuned on; another seed gives held-out days
#                  of the same shapes, kept under their own names)
#
# Each round: the day is read once into the page cache, then `itch-order-book < DAY` (it times itself from
# its first Add Order to the end and prints "N packets in T nanos"), then `fh-bench-engine DAY 1` (one pass
# of fh_engine_apply_blocks over the mapped day, its median line). Reported per shape: the median and
# minimum ns a message of each, and the ratio of medians (the peer's time / fh's: above 1 means fh is faster);
# then the same ratio round by round (a round's peer against the same round's fh): its median, its lowest and in how
# many rounds it reached 2x.
# The peer reads its input with read(2) through a buffer, fh from a mapping: the peer's figure includes its
# reads, as its README measures it. Wall-clock figures: run on a quiet machine with FH_BENCH_CPU isolated.
set -euo pipefail

die() { echo "peer.sh: $*" >&2; exit 1; }
[[ ${1:-} == -h || ${1:-} == --help || $# -lt 1 || $# -gt 4 ]] && { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

PEER_DIR=$1
MESSAGES=${2:-2000000}
INSTRUMENTS=${3:-8000}
ROUNDS=${4:-7}
CPU=${FH_BENCH_CPU:-1}
SHAPES=${FH_BENCH_SHAPES:-uniform real real-late}
SEED=${FH_BENCH_SEED:-1}
[[ -f $PEER_DIR/main.cpp && -f $PEER_DIR/order_book.h ]] ||
    die "$PEER_DIR is not an itch-order-book checkout (no main.cpp, order_book.h); fix: git clone https://github.com/charles-cooper/itch-order-book"
[[ $MESSAGES =~ ^[1-9][0-9]*$ ]] || die "MESSAGES must be a positive integer, not '$MESSAGES'"
[[ $INSTRUMENTS =~ ^[1-9][0-9]*$ ]] && ((INSTRUMENTS <= 8000)) ||
    die "INSTRUMENTS must be 1..8000 (the peer holds 16,384 books; fh synth's days use locates up to INSTRUMENTS), not '$INSTRUMENTS'"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, not '$ROUNDS'"
[[ $SEED =~ ^[0-9]+$ ]] || die "FH_BENCH_SEED must be a non-negative integer, not '$SEED'"
# seed 1's days keep the names they always had, so that a kept FH_BENCH_DIR is reused
TAG=$([[ $SEED == 1 ]] || echo "-seed$SEED")
command -v g++ >/dev/null || die "g++ not found; fix: apt-get install g++"
command -v taskset >/dev/null || die "taskset not found; fix: apt-get install util-linux"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FH=$ROOT/.venv/bin/fh
[[ -x $FH ]] || die "no $FH; fix: bash scripts/setup.sh"
shopt -s nullglob
candidates=("$ROOT"/build/cp3*/native/bench/fh-bench-engine)
shopt -u nullglob
((${#candidates[@]})) || die "no build/cp3*/native/bench/fh-bench-engine; fix: bash scripts/setup.sh"
PROGRAM=${candidates[0]} # the newest, if there are builds for several Pythons
for c in "${candidates[@]}"; do [[ $c -nt $PROGRAM ]] && PROGRAM=$c; done

if [[ -n ${FH_BENCH_DIR:-} ]]; then
    WORK=$FH_BENCH_DIR
    mkdir -p "$WORK"
else
    WORK=$(mktemp -d)
    trap 'rm -rf "$WORK"' EXIT
fi

PEER=$WORK/itch-order-book
stale=
for f in "$PEER_DIR"/*.cpp "$PEER_DIR"/*.h; do [[ $f -nt $PEER ]] && stale=1; done
if [[ ! -x $PEER || -n $stale ]]; then
    echo "building the peer: g++ -O3 -march=native -std=c++1y (its build.sh) -> $PEER" >&2
    g++ -O3 -march=native -std=c++1y -o "$PEER.$$" "$PEER_DIR/main.cpp" "$PEER_DIR/bufferedreader.cpp" ||
        die "the peer did not build (above)"
    mv "$PEER.$$" "$PEER"
fi

# The peer stops at a message type it does not know (it has no 'h', Operational Halt, of ITCH 5.0): both
# programs get the day without those messages, so they apply the same input.
for shape in $SHAPES; do
    full=$WORK/day-$MESSAGES-$INSTRUMENTS-$shape$TAG.itch
    day=$WORK/day-$MESSAGES-$INSTRUMENTS-$shape$TAG-peer.itch
    # each file written aside and renamed, so that an interrupted run leaves no partial day to be reused
    if [[ ! -s $full ]]; then
        "$FH" synth itch "$full.part.$$" --messages "$MESSAGES" --instruments "$INSTRUMENTS" --seed "$SEED" \
            --shape "$shape" >/dev/null || { rm -f "$full.part.$$"; die "fh synth itch failed for the $shape day"; }
        mv "$full.part.$$" "$full"
    fi
    [[ -s $day && ! $full -nt $day ]] || python3 - "$full" "$day.part.$$" <<'EOF'
import sys
known = set(b"SRHYLVWKAFECXDUPQBINJ")
data, out, i, dropped = open(sys.argv[1], "rb").read(), bytearray(), 0, 0
while i + 3 <= len(data):
    n = int.from_bytes(data[i:i + 2], "big")
    if data[i + 2] in known:
        out += data[i:i + 2 + n]
    else:
        dropped += 1
    i += 2 + n
open(sys.argv[2], "wb").write(out)
print(f"{sys.argv[2]}: {dropped:,} messages of types the peer does not know left out", file=sys.stderr)
EOF
    [[ ! -e $day.part.$$ ]] || mv "$day.part.$$" "$day"
done

results=$(mktemp "$WORK/peer-results.XXXXXX") # this run's own: another may share FH_BENCH_DIR
for ((r = 1; r <= ROUNDS; r++)); do
    for shape in $SHAPES; do
        day=$WORK/day-$MESSAGES-$INSTRUMENTS-$shape$TAG-peer.itch
        cat "$day" >/dev/null
        out=$(taskset -c "$CPU" "$PEER" <"$day") || die "the peer failed on $day"
        ns=$(sed -n 's/.* packets in \([0-9]*\) nanos.*/\1/p' <<<"$out")
        pk=$(sed -n 's/^\([0-9]*\) packets in .*/\1/p' <<<"$out")
        [[ -n $ns && -n $pk ]] || die "cannot read the peer's timing line in: $out"
        echo "$shape peer $(awk -v n="$ns" -v p="$pk" 'BEGIN { printf "%.3f", n / p }')" >>"$results"
        out=$(taskset -c "$CPU" "$PROGRAM" "$day" 1) || die "fh-bench-engine failed on $day"
        echo "$shape fh $(sed -n 's/.*"median_ns_per_msg": \([0-9.]*\).*/\1/p' <<<"$out")" >>"$results"
    done
done

python3 - "$results" "$MESSAGES" "$INSTRUMENTS" "$ROUNDS" "$CPU" "$SEED" <<'EOF'
import collections, statistics, sys
path, messages, instruments, rounds, cpu, seed = sys.argv[1:]
runs = collections.defaultdict(list)
for line in open(path):
    shape, who, ns = line.split()
    runs[shape, who].append(float(ns))
print(f"{int(messages):,} messages, {int(instruments):,} instruments, seed {seed}, {rounds} interleaved rounds, "
      f"CPU {cpu}")
print(f"{'day':9} {'peer median':>12} {'peer min':>9} {'fh median':>10} {'fh min':>7} {'peer/fh':>8}   "
      f"{'per round: median':>17} {'lowest':>7} {'rounds >= 2x':>12}")
for shape in dict.fromkeys(s for s, _ in runs):
    p, f = runs[shape, "peer"], runs[shape, "fh"]
    # the same round's pair (each round runs the peer, then fh, on the day): how often the 2x holds within a round
    per = [x / y for x, y in zip(p, f)]
    print(f"{shape:9} {statistics.median(p):10.2f}ns {min(p):7.2f}ns {statistics.median(f):8.2f}ns "
          f"{min(f):5.2f}ns {statistics.median(p) / statistics.median(f):7.2f}x   "
          f"{statistics.median(per):16.2f}x {min(per):6.2f}x {sum(r >= 2 for r in per):>7d} of {len(per)}")
EOF
