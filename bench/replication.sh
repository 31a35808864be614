#!/usr/bin/env bash
# bench/replication.sh [--idle spin|backoff] [--cores P,S] [--feed-core N] [--rates "R ..."] [--loops N]
#                      [--write-kb N] [ITCH_FILE]:
# replication lag over libfabric's tcp provider on loopback, split into its parts, with the provider's own
# one-way latency measured first in the same session as the baseline.
#
# A journal is written by fh-bench-repl-feed (a day's messages in records of 32, looped, sequences continuing;
# the first record a second after the journal appears, once the primary is connected) at a paced rate and at
# top speed (rate 0); fh-replicate --role primary follows it and ships each record with fi_writedata to an
# fh-replicate --role standby that applies it to its own journal, engine and segment. Every record's times
# (CLOCK_REALTIME, one host) give the lag's parts:
#   journal -> seen      the feed starts writing the record -> the primary has read it off the journal
#   seen -> posted       the primary builds the frame and posts fi_writedata
#   posted -> completion the standby's receive queue gives the write's completion (transport + its polling)
#   completion -> applied the standby has journaled and applied it (engine, segment)
#   total                journal -> applied
# and, for the slowest 1 % of records by total, the mean of each part: where the tail comes from.
#   --idle backoff (default): both roles nap 20 µs when idle, on any core: for a shared machine.
#   --idle spin: both roles busy-poll, the primary on core P and the standby on core S (--cores, default 0,1);
#                the feed writer naps between records on --feed-core (default: the standby's core, where it
#                only takes time the standby does not need while the record is not shipped yet).
#   --write-kb N: the primary's cap on one write (the records ready, combined; fh-replicate's default 256 KiB;
#                0: one record a write, as before the records were combined). Writes a message are reported.
# Each run is short (LOOPS x the day; 2 M messages are 2 s at 1 M/s). Figures: bench/replication.md.
#
# Environment (or the options): RATES (default "100000 1000000 0"), LOOPS (default 20), PROVIDER (default tcp),
# PING_ROUNDS (default 20000: the ping-pong's rounds, after 1,000 of warm-up).
set -euo pipefail
die() { echo "replication.sh: $*" >&2; exit 1; }
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IDLE=backoff CORES="" FEED_CORE="" RATES=${RATES:-"100000 1000000 0"} LOOPS=${LOOPS:-20} PROVIDER=${PROVIDER:-tcp}
PING_ROUNDS=${PING_ROUNDS:-20000} WRITE_KB=()
DAY=$ROOT/pcaps/synth-100k.itch
while (($#)); do
    case $1 in
        --idle) IDLE=${2:?}; shift 2 ;;
        --cores) CORES=${2:?}; shift 2 ;;
        --feed-core) FEED_CORE=${2:?}; shift 2 ;;
        --rates) RATES=${2:?}; shift 2 ;;
        --loops) LOOPS=${2:?}; shift 2 ;;
        --write-kb) WRITE_KB=(--write-kb "${2:?}"); shift 2 ;;
        -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) DAY=$1; shift ;;
    esac
done
[[ $IDLE == spin || $IDLE == backoff ]] || die "--idle $IDLE: spin or backoff"
[[ -r $DAY ]] || die "cannot read $DAY"
shopt -s nullglob
r=("$ROOT"/build/cp3*/native/replicate/fh-replicate); f=("$ROOT"/build/cp3*/native/bench/fh-bench-repl-feed)
pp=("$ROOT"/build/cp3*/native/replicate/fh-bench-fabric-pingpong)
shopt -u nullglob
((${#r[@]})) || die "no fh-replicate (built with libfabric: apt-get install libfabric-dev; bash scripts/setup.sh)"
((${#f[@]})) || die "no fh-bench-repl-feed: build with bash scripts/setup.sh"
((${#pp[@]})) || die "no fh-bench-fabric-pingpong: build with bash scripts/setup.sh"
REPL=${r[0]} FEED=${f[0]} PING=${pp[0]}
ncpu=$(nproc)
P_CORE=() S_CORE=() F_CORE=()
if [[ $IDLE == spin ]]; then
    CORES=${CORES:-0,1}
    [[ $CORES =~ ^([0-9]+),([0-9]+)$ ]] || die "--cores $CORES: two cores, P,S (e.g. 0,1)"
    pc=${BASH_REMATCH[1]} sc=${BASH_REMATCH[2]} fc=${FEED_CORE:-${BASH_REMATCH[2]}}
    for c in $pc $sc $fc; do ((c < ncpu)) || die "core $c: this machine has cores 0..$((ncpu - 1))"; done
    [[ $pc != "$sc" ]] || die "--cores $CORES: the primary and the standby spin: two different cores"
    P_CORE=(--core "$pc") S_CORE=(--core "$sc") F_CORE=(--core "$fc")
    PING_CORES=(--cores "$pc,$sc")
else
    [[ -z $CORES && -z $FEED_CORE ]] || die "--cores and --feed-core go with --idle spin"
    PING_CORES=(--cores 0,$((ncpu > 1 ? 1 : 0)))
fi
TAG=bench-repl-$$
TMP=$(mktemp -d)
cleanup() { rm -f /dev/shm/fh-$TAG*; rm -rf "$TMP"; }
trap cleanup EXIT
port=$((20000 + $$ % 20000))
echo "# $(date -u +%FT%TZ) $ncpu cores, load $(cut -d' ' -f1-3 /proc/loadavg), provider $PROVIDER, idle $IDLE$(
     )${CORES:+ (primary, standby cores $CORES, feed core ${FEED_CORE:-${CORES#*,}})}, $LOOPS x $(basename "$DAY")$(
     ), write cap ${WRITE_KB[1]:-default} KiB"
# the baseline: one write there and one back, both spinning (the provider's own one-way latency)
"$PING" --provider "$PROVIDER" --port $((port + 1000)) --rounds "$PING_ROUNDS" "${PING_CORES[@]}" > "$TMP/ping" \
    || die "the fabric ping-pong failed"
for rate in $RATES; do
    port=$((port + 1))
    rm -f /dev/shm/fh-$TAG*
    "$REPL" --role standby --provider "$PROVIDER" --listen 127.0.0.1:$port --name $TAG-s --segment /dev/shm/fh-$TAG-s \
        --journal /dev/shm/fh-$TAG-s.journal --journal-mb 64 --max-orders 2000000 --max-levels 400000 --ring-mb 16 \
        --exit-when-done --idle "$IDLE" "${S_CORE[@]}" --trace "$TMP/standby.$rate" > "$TMP/out.standby.$rate" 2>"$TMP/err.standby" &
    sb=$!
    sleep 0.3
    "$REPL" --role primary --provider "$PROVIDER" --peer 127.0.0.1:$port --name $TAG-p --journal /dev/shm/fh-$TAG.journal \
        --from oldest --exit-when-done --connect-timeout-ms 10000 --idle "$IDLE" "${P_CORE[@]}" "${WRITE_KB[@]}" \
        > "$TMP/out.primary.$rate" 2>"$TMP/err.primary" &
    pr=$!
    "$FEED" "$DAY" --journal /dev/shm/fh-$TAG.journal --mb 256 --rate "$rate" --loops "$LOOPS" --delay-ms 1000 \
        "${F_CORE[@]}" --trace "$TMP/feed.$rate" > "$TMP/out.feed.$rate"
    wait $pr || die "the primary failed: $(tail -2 "$TMP/err.primary")"
    wait $sb || die "the standby failed: $(tail -2 "$TMP/err.standby")"
    echo "# rate $rate done $(date -u +%T), load $(cut -d' ' -f1-3 /proc/loadavg)"
done
python3 - "$TMP" "$RATES" <<'PY'
import json, struct, sys
tmp, rates = sys.argv[1], sys.argv[2].split()
ping = json.load(open(f"{tmp}/ping"))
print(f"\nbaseline, the provider's one-way latency (a {ping['size']}-byte write there and one back, both spinning, "
      f"cores {ping['cores'][0]},{ping['cores'][1]}): p50 {ping['one_way_us_p50']:.1f} µs, p99 {ping['one_way_us_p99']:.1f} µs, "
      f"p99.9 {ping['one_way_us_p999']:.1f} µs")
def pct(v, q):
    return v[min(len(v) - 1, int(len(v) * q))]
parts = ("journal -> seen", "seen -> posted", "posted -> completion", "completion -> applied", "total")
for rate in rates:
    feed = json.load(open(f"{tmp}/out.feed.{rate}"))
    pri = json.loads(open(f"{tmp}/out.primary.{rate}").read().splitlines()[-1])
    sby = json.loads(open(f"{tmp}/out.standby.{rate}").read().splitlines()[-1])
    raw = open(f"{tmp}/feed.{rate}", "rb").read()
    written = {s: t for s, t in struct.iter_unpack("<QQ", raw)}
    rows = []
    for seq, seen, sent, cq, applied in struct.iter_unpack("<5Q", open(f"{tmp}/standby.{rate}", "rb").read()):
        w = written.get(seq)
        if w is not None:
            rows.append((seen - w, sent - seen, cq - sent, applied - cq, applied - w))
    name = "top speed" if rate == "0" else f"{int(rate):,}/s paced"
    print(f"\n## {name}: feed {feed['messages']:,} messages in {feed['records']:,} records at {feed['rate']:,.0f}/s; "
          f"primary shipped {pri['messages']:,}, acknowledged {pri['acked_messages']:,}; standby applied {sby['messages']:,} "
          f"in {sby['apply_s']:.2f} s ({sby['messages'] / max(sby['apply_s'], 1e-9) / 1e6:.2f} M/s); "
          f"CPU primary {pri['cpu_s']:.2f} s, standby {sby['cpu_s']:.2f} s; {len(rows):,} records timed; "
          f"{pri['writes']:,} writes ({pri['writes'] / max(pri['messages'], 1):.4f} a message, "
          f"{pri['frames'] / max(pri['writes'], 1):.2f} records a write, cap {pri['write_max']:,} bytes)")
    if not rows:
        continue
    print("| part (µs) | p50 | p90 | p99 | p99.9 | max | mean in the slowest 1 % |")
    print("|---|---|---|---|---|---|---|")
    slow = sorted(rows, key=lambda r: r[4])[-max(1, len(rows) // 100):]
    for i, p in enumerate(parts):
        v = sorted(r[i] for r in rows)
        tail = sum(r[i] for r in slow) / len(slow)
        print(f"| {p} | " + " | ".join(f"{pct(v, q) / 1e3:.1f}" for q in (0.5, 0.9, 0.99, 0.999)) +
              f" | {v[-1] / 1e3:.1f} | {tail / 1e3:.1f} |")
PY
