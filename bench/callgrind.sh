#!/usr/bin/env bash
# bench/callgrind.sh [MESSAGES] [INSTRUMENTS] [SHAPE]: instructions per message of the C book engine, and of
# the parse-only pass (the floor), counted by callgrind on a synthetic ITCH day. Unlike wall-clock time on a
# shared machine, the count is repeatable: the same build and the same day give the same figure.
#
#   MESSAGES     messages in the day (default 20000000)
#   INSTRUMENTS  instruments in the day (default 8000)
#   SHAPE        uniform (default), real or real-late: fh synth itch --shape (fh/synth.h)
#
# Environment:
#   FH_BENCH_DIR      keep the generated day in this directory and reuse it on later runs (the file is
#                     day-MESSAGES-INSTRUMENTS-sSEED.itch); default: a temporary directory, removed at exit
#   FH_BENCH_SEED     generator seed (default 1, as `fh bench engine`)
#   FH_BENCH_PROGRAM  the benchmark program (default: the newest build/cp3*/native/[bench/]fh-bench-engine,
#                     built by meson)
#   FH_BENCH_KEEP     set to 1 to keep callgrind's output files (callgrind.engine.PID.out, callgrind.scan.PID.out)
#                     beside the day, for callgrind_annotate
#   FH_BENCH_SCAN     set to 0 to skip the parse-only run (it does not depend on the engine's build)
#   FH_BENCH_CACHE    set to 1 to simulate the caches too (--cache-sim=yes, the host's cache sizes): adds
#                     last-level misses a message (instruction + data reads + data writes) to the report
#
# It builds nothing: run `bash scripts/setup.sh` (or import handler._native in the venv, which rebuilds an
# editable install) first. The program is run as `PROGRAM DAY 1` (one pass through the engine) under
# `valgrind --tool=callgrind --toggle-collect=fh_engine_apply_blocks`, and as `PROGRAM DAY 1 scan` under
# `--toggle-collect=fh_itch_scan`: only instructions executed inside those functions (and what they call)
# are counted, so generating, mapping and resetting are left out.
set -euo pipefail

die() { echo "callgrind.sh: $*" >&2; exit 1; }

usage() {
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

[[ ${1:-} == -h || ${1:-} == --help ]] && usage
(($# <= 3)) || usage
MESSAGES=${1:-20000000}
INSTRUMENTS=${2:-8000}
SHAPE=${3:-uniform}
[[ $SHAPE == uniform || $SHAPE == real || $SHAPE == real-late ]] || die "SHAPE must be uniform, real or real-late, not '$SHAPE'"
CACHE=${FH_BENCH_CACHE:-0}
SEED=${FH_BENCH_SEED:-1}
[[ $MESSAGES =~ ^[1-9][0-9]*$ ]] || die "MESSAGES must be a positive integer, not '$MESSAGES'"
[[ $INSTRUMENTS =~ ^[1-9][0-9]*$ ]] || die "INSTRUMENTS must be a positive integer, not '$INSTRUMENTS'"
((INSTRUMENTS <= 65535)) || die "INSTRUMENTS must be at most 65535, not $INSTRUMENTS"
[[ $SEED =~ ^[0-9]+$ ]] || die "FH_BENCH_SEED must be a non-negative integer, not '$SEED'"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# ---- the benchmark program (built by meson, not here) ----
if [[ -n ${FH_BENCH_PROGRAM:-} ]]; then
    PROGRAM=$FH_BENCH_PROGRAM
    [[ -x $PROGRAM ]] || die "FH_BENCH_PROGRAM=$PROGRAM is not an executable file"
else
    shopt -s nullglob
    # native/fh-bench-engine until 6255b96 moved it to native/bench/
    candidates=("$ROOT"/build/cp3*/native/fh-bench-engine "$ROOT"/build/cp3*/native/bench/fh-bench-engine)
    shopt -u nullglob
    ((${#candidates[@]})) || die "no benchmark program at $ROOT/build/cp3*/native/[bench/]fh-bench-engine; build it with: bash scripts/setup.sh"
    PROGRAM=${candidates[0]} # the newest, if there are builds for several Pythons
    for c in "${candidates[@]}"; do [[ $c -nt $PROGRAM ]] && PROGRAM=$c; done
    [[ -x $PROGRAM ]] || die "$PROGRAM is not executable; rebuild with: bash scripts/setup.sh"
fi
# ---- valgrind ----
if ! command -v valgrind >/dev/null; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "callgrind.sh: installing valgrind" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq valgrind >/dev/null 2>&1 ||
            { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; } ||
            die "could not install valgrind with apt-get"
    else
        die "valgrind is not installed; as root: apt-get install -y valgrind"
    fi
fi

# ---- the day ----
if [[ -n ${FH_BENCH_DIR:-} ]]; then
    mkdir -p "$FH_BENCH_DIR" || die "cannot create FH_BENCH_DIR=$FH_BENCH_DIR"
    WORK=$(cd "$FH_BENCH_DIR" && pwd)
else
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/fh-callgrind.XXXXXX")
    [[ ${FH_BENCH_KEEP:-0} == 1 ]] || TMPWORK=$WORK
fi
BIN=
cleanup() {
    [[ -z $BIN ]] || rm -f "$BIN"
    [[ -z ${TMPWORK:-} ]] || rm -rf "$TMPWORK"
}
trap cleanup EXIT
trap 'exit 130' INT # so that cleanup runs on Ctrl-C and on kill too
trap 'exit 143' TERM
DAY=$WORK/day-$MESSAGES-$INSTRUMENTS-s$SEED.itch
[[ $SHAPE == uniform ]] || DAY=$WORK/day-$MESSAGES-$INSTRUMENTS-s$SEED-$SHAPE.itch
if [[ -s $DAY ]]; then
    echo "callgrind.sh: reusing $DAY" >&2
else
    if [[ -x $ROOT/.venv/bin/fh ]]; then
        FH=$ROOT/.venv/bin/fh
    elif command -v fh >/dev/null; then
        FH=$(command -v fh)
    else
        die "no fh command (neither $ROOT/.venv/bin/fh nor fh on PATH); run: bash scripts/setup.sh"
    fi
    echo "callgrind.sh: generating $MESSAGES messages, $INSTRUMENTS instruments, seed $SEED into $DAY" >&2
    # a part of this run's own (two runs sharing FH_BENCH_DIR may generate the same day at once)
    "$FH" synth itch "$DAY.part.$$" --messages "$MESSAGES" --instruments "$INSTRUMENTS" --seed "$SEED" \
        --shape "$SHAPE" || { rm -f "$DAY.part.$$"; die "fh synth itch failed"; }
    mv "$DAY.part.$$" "$DAY"
fi

# ---- the program, checked and copied ----
# After the day: `fh` rebuilds an editable install on import, so this is when the build is current. A copy
# keeps both runs on one binary even if the build is replaced meanwhile.
# Warn (do not fail) when the program is out of date: the figures would be those of an old build. ninja
# knows (a dry run builds nothing); without it, compare times with the C sources.
if [[ -z ${FH_BENCH_PROGRAM:-} ]]; then
    BUILDDIR=${PROGRAM%/native/*} # build/cp3XX
    NINJA=$(command -v "$ROOT/.venv/bin/ninja" ninja 2>/dev/null | head -n1 || true)
    if [[ -n $NINJA && -f $BUILDDIR/build.ninja ]]; then
        plan=$("$NINJA" -C "$BUILDDIR" -n "${PROGRAM#"$BUILDDIR"/}" 2>&1 || true)
        if ! grep -q 'no work to do' <<<"$plan"; then
            echo "callgrind.sh: warning: $PROGRAM is out of date (ninja would rebuild it); the figures are" \
                 "for the old build. Rebuild with: bash scripts/setup.sh" >&2
        fi
    else
        newer=$(find "$ROOT/native/src" "$ROOT/native/include" "$ROOT/native/bench" -name '*.[ch]' \
                -newer "$PROGRAM" -printf '%P ' 2>/dev/null || true)
        if [[ -n $newer ]]; then
            echo "callgrind.sh: warning: sources newer than $PROGRAM: ${newer% }; the figures may be for an" \
                 "old build. Rebuild with: bash scripts/setup.sh" >&2
        fi
    fi
fi
# The functions callgrind toggles on must be real symbols (not stripped, not inlined into main).
if command -v nm >/dev/null; then
    syms=$(nm "$PROGRAM" 2>/dev/null || true)
    for fn in fh_engine_apply_blocks fh_itch_scan; do
        grep -q " [Tt] $fn\$" <<<"$syms" || die "$PROGRAM has no symbol $fn (stripped?); callgrind cannot toggle on it"
    done
fi
BIN=$WORK/fh-bench-engine.$$
cp "$PROGRAM" "$BIN" || die "cannot copy $PROGRAM to $WORK"
BIN_SHA=$(sha256sum "$BIN" | cut -c1-12)

# ---- callgrind ----
# run MODE FUNCTION: sets COLLECTED (instructions in FUNCTION) and MSGS (messages, from the program's JSON).
# The program turns instrumentation on around the measured call (callgrind's client requests, when it was built
# with valgrind's header): --instr-atstart=no leaves the engine's creation, which writes every page of its tables,
# uninstrumented (about ten times faster, the same count). A program built without the header counts nothing so,
# and is run again instrumented throughout.
run() {
    # this run's own files (a shared FH_BENCH_DIR may have another run in it at once)
    local mode=$1 fn=$2 log=$WORK/callgrind.$1.$$.log out=$WORK/callgrind.$1.$$.out json args=("$DAY" 1) vg=() late
    [[ $mode == scan ]] && args+=(scan)
    [[ $CACHE == 1 ]] && vg+=(--cache-sim=yes)
    for late in --instr-atstart=no --instr-atstart=yes; do
        echo "callgrind.sh: valgrind --tool=callgrind ${vg[*]} $late --toggle-collect=$fn $(basename "$PROGRAM") ${args[*]}" >&2
        if ! json=$(valgrind --tool=callgrind ${vg[@]+"${vg[@]}"} "$late" --toggle-collect="$fn" --callgrind-out-file="$out" \
                    "$BIN" "${args[@]}" 2>"$log"); then
            tail -n 20 "$log" >&2
            die "valgrind or the program failed in mode $mode (log above, full log: $log)"
        fi
        COLLECTED=$(sed -n 's/^==[0-9]*== Collected : *\([0-9][0-9]*\).*/\1/p' "$log" | tail -n1)
        [[ ${COLLECTED:-0} -gt 0 ]] && break
    done
    # with --cache-sim=yes the line reads: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw
    LLMISS=$(sed -n 's/^==[0-9]*== Collected : *//p' "$log" | tail -n1 | awk 'NF >= 9 { print $7 + $8 + $9 }')
    LLCFG=$(grep -m1 -o 'LL cache: .*\|Cache configuration used:.*' "$log" || true)
    [[ -n $COLLECTED ]] || { tail -n 20 "$log" >&2; die "no 'Collected :' line in valgrind's output ($log)"; }
    ((COLLECTED > 0)) || die "callgrind collected 0 instructions in $fn: is the symbol missing or inlined?"
    MSGS=$(sed -n 's/.*"messages": *\([0-9][0-9]*\).*/\1/p' <<<"$json")
    [[ -n $MSGS && $MSGS -gt 0 ]] || die "no message count in the program's output: $json"
    [[ ${FH_BENCH_KEEP:-0} == 1 ]] || rm -f "$out" "$log"
}

run engine fh_engine_apply_blocks
ENGINE_IR=$COLLECTED ENGINE_MSGS=$MSGS ENGINE_LL=${LLMISS:-}
if [[ ${FH_BENCH_SCAN:-1} == 0 ]]; then
    SCAN_IR=0 SCAN_MSGS=$ENGINE_MSGS SCAN_LL=${ENGINE_LL:+0}
else
    run scan fh_itch_scan
    SCAN_IR=$COLLECTED SCAN_MSGS=$MSGS SCAN_LL=${LLMISS:-}
fi
((ENGINE_MSGS == SCAN_MSGS)) ||
    echo "callgrind.sh: warning: the engine counted $ENGINE_MSGS messages, the scan $SCAN_MSGS" >&2

rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$ROOT" status --porcelain -- native 2>/dev/null || true)
awk -v m="$MESSAGES" -v k="$INSTRUMENTS" -v s="$SEED" -v n="$ENGINE_MSGS" -v ei="$ENGINE_IR" -v si="$SCAN_IR" \
    -v sn="$SCAN_MSGS" -v prog="$PROGRAM (sha256 $BIN_SHA)" -v rev="$rev${dirty:+ (native/ modified)}" \
    -v shape="$SHAPE" -v el="${ENGINE_LL:-}" -v sl="${SCAN_LL:-}" 'BEGIN {
    e = ei / n; p = si / sn
    printf "day: %.0f messages, %.0f instruments, seed %.0f, shape %s (%.0f messages counted)\n", m, k, s, shape, n
    printf "program: %s, commit %s\n", prog, rev
    printf "%-24s %16s %12s\n", "", "instructions", "per message"
    printf "%-24s %16.0f %12.2f\n", "engine (apply_blocks)", ei, e
    if (si > 0) {
        printf "%-24s %16.0f %12.2f\n", "parse-only (itch_scan)", si, p
        printf "%-24s %16.0f %12.2f\n", "engine - parse-only", ei - si, e - p
    }
    if (el != "") {
        printf "%-24s %16s %12s\n", "(cache simulation)", "LL misses", "per message"
        printf "%-24s %16.0f %12.4f\n", "engine (apply_blocks)", el, el / n
        if (si > 0)
            printf "%-24s %16.0f %12.4f\n", "parse-only (itch_scan)", sl, sl / sn
    }
}'
if [[ ${FH_BENCH_KEEP:-0} == 1 ]]; then
    echo "callgrind output kept in $WORK (callgrind_annotate --auto=yes $WORK/callgrind.engine.$$.out)" >&2
fi
