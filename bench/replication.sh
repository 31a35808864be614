#!/usr/bin/env bash
# bench/replication.sh [ITCH_FILE]: replication lag over libfabric's tcp provider on loopback. A journal is
# written by fh-bench-repl-feed (a day's messages in records of 32, looped, sequences continuing; the first
# record a second after the journal appears, once the primary is connected) at a paced rate and at top
# speed; fh-replicate --role primary follows it and ships each record with fi_writedata to an fh-replicate
# --role standby that applies it to its own journal, engine and segment. The standby measures lag per record
# from the primary's shipping time (CLOCK_REALTIME, same host) to its apply, and prints p50/p99/p99.9/max in
# µs; the primary prints messages shipped and acknowledged. Both idle by sleeping (--idle backoff, 20 µs
# naps): the machine is shared, so no role busy-polls here. Figures: bench/replication.md.
#
# Environment: RATES (default "100000 1000000 0", 0 = top speed), LOOPS (default 20: 2 M messages of the
# 100,000-message day), PROVIDER (default tcp).
set -euo pipefail
die() { echo "replication.sh: $*" >&2; exit 1; }
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DAY=${1:-$ROOT/pcaps/synth-100k.itch}
[[ -r $DAY ]] || die "cannot read $DAY"
shopt -s nullglob
r=("$ROOT"/build/cp3*/native/replicate/fh-replicate); f=("$ROOT"/build/cp3*/native/bench/fh-bench-repl-feed)
shopt -u nullglob
((${#r[@]})) || die "no fh-replicate (built with libfabric: apt-get install libfabric-dev; bash scripts/setup.sh)"
((${#f[@]})) || die "no fh-bench-repl-feed: build with bash scripts/setup.sh"
REPL=${r[0]} FEED=${f[0]}
RATES=${RATES:-"100000 1000000 0"} LOOPS=${LOOPS:-20} PROVIDER=${PROVIDER:-tcp}
TAG=bench-repl-$$
cleanup() { rm -f /dev/shm/fh-$TAG*; }
trap cleanup EXIT
port=$((20000 + $$ % 20000))
echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), provider $PROVIDER, $LOOPS x $(basename "$DAY")"
for rate in $RATES; do
    port=$((port + 1))
    cleanup
    "$REPL" --role standby --provider "$PROVIDER" --listen 127.0.0.1:$port --name $TAG-s --segment /dev/shm/fh-$TAG-s \
        --journal /dev/shm/fh-$TAG-s.journal --journal-mb 64 --max-orders 2000000 --max-levels 400000 --ring-mb 16 \
        --exit-when-done > /tmp/$TAG.standby 2>/dev/null &
    sb=$!
    sleep 0.3
    "$REPL" --role primary --provider "$PROVIDER" --peer 127.0.0.1:$port --name $TAG-p --journal /dev/shm/fh-$TAG.journal \
        --from oldest --exit-when-done --connect-timeout-ms 10000 > /tmp/$TAG.primary &
    pr=$!
    feed=$("$FEED" "$DAY" --journal /dev/shm/fh-$TAG.journal --mb 256 --rate "$rate" --loops "$LOOPS" --delay-ms 1000)
    wait $pr
    wait $sb
    echo "rate $rate: feed $feed"
    echo "  primary $(cat /tmp/$TAG.primary)"
    echo "  standby $(cat /tmp/$TAG.standby)"
    rm -f /tmp/$TAG.primary /tmp/$TAG.standby
done
