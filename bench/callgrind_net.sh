#!/usr/bin/env bash
# bench/callgrind_net.sh [MIX...]: instructions per frame of fh_net_parse (fh/net.h), counted by callgrind on
# fh-bench-net's frame mix (native/bench/bench_net.c). Repeatable, unlike its ns/frame on a shared machine:
# the same build gives the same count.
#
#   MIX  mix (two lines, half VLAN-tagged, 3% other group, 2% not UDP) and/or a (the A line only, untagged,
#        as `fh bench dataplane` sends it); default: both
#
# Environment:
#   FH_BENCH_PROGRAM  the benchmark program (default: the newest build/cp3*/native/bench/fh-bench-net)
#
# The program runs as `fh-bench-net MIX 10 1` (10 passes over its 4,096 frames) under
# `valgrind --tool=callgrind --toggle-collect=fh_net_parse`: only instructions executed inside fh_net_parse
# (and what it calls) are counted, so building the frames is left out; the call itself is not counted.
set -euo pipefail

die() { echo "callgrind_net.sh: $*" >&2; exit 1; }

[[ ${1:-} == -h || ${1:-} == --help ]] && { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
MIXES=("$@")
((${#MIXES[@]})) || MIXES=(mix a)
for m in "${MIXES[@]}"; do [[ $m == mix || $m == a ]] || die "MIX must be mix or a, not '$m'"; done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -n ${FH_BENCH_PROGRAM:-} ]]; then
    PROGRAM=$FH_BENCH_PROGRAM
else
    shopt -s nullglob
    candidates=("$ROOT"/build/cp3*/native/bench/fh-bench-net)
    shopt -u nullglob
    ((${#candidates[@]})) || die "no $ROOT/build/cp3*/native/bench/fh-bench-net; build it with: bash scripts/setup.sh"
    PROGRAM=${candidates[0]}
    for c in "${candidates[@]}"; do [[ $c -nt $PROGRAM ]] && PROGRAM=$c; done
fi
[[ -x $PROGRAM ]] || die "$PROGRAM is not an executable file"
command -v valgrind >/dev/null || die "valgrind is not installed; as root: apt-get install -y valgrind"
if command -v nm >/dev/null; then
    nm "$PROGRAM" | grep -q " [Tt] fh_net_parse\$" || die "$PROGRAM has no symbol fh_net_parse; callgrind cannot toggle on it"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/fh-callgrind-net.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
echo "program: $PROGRAM (sha256 $(sha256sum "$PROGRAM" | cut -c1-12))"
printf '%-6s %12s %10s %22s\n' mix instructions frames "instructions / frame"
for m in "${MIXES[@]}"; do
    log=$WORK/$m.log
    if ! json=$(valgrind --tool=callgrind --toggle-collect=fh_net_parse --callgrind-out-file="$WORK/$m.out" \
                "$PROGRAM" "$m" 10 1 2>"$log"); then
        tail -n 20 "$log" >&2
        die "valgrind or the program failed (mix $m)"
    fi
    ir=$(sed -n 's/^==[0-9]*== Collected : *\([0-9][0-9]*\).*/\1/p' "$log" | tail -n1)
    frames=$(sed -n 's/.*"frames": *\([0-9][0-9]*\).*/\1/p' <<<"$json")
    [[ -n $ir && -n $frames && $frames -gt 0 ]] || die "no count (log $log, output $json)"
    awk -v m="$m" -v ir="$ir" -v f="$frames" 'BEGIN { printf "%-6s %12.0f %10.0f %22.2f\n", m, ir, f, ir / f }'
done
