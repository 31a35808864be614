#!/usr/bin/env bash
# native/bench/shm_bench.sh [ROUNDS]: the shared-memory benchmarks of bench/shm.md, every figure from one
# command. ROUNDS (default 3): how many times each wall-clock benchmark runs (interleaved where two are
# compared). Prints one labelled JSON line per run; read min and median across runs (the machine is shared).
#
#   read-idle      fh-bench-shm-read (C top-10 snapshot) against a held segment (fh publish --hold)
#   read-busy      the same while `fh publish --loop 4` writes the 20M day (writer CPU 0, reader CPU 1)
#   py-idle        handler.shm Reader.snapshot(locate, 10), held segment (skipped if handler/shm.py is absent)
#   wake           fh-bench-wake: writer publish -> blocked reader return (futex sleep, and spinning)
#   engine/publish fh-bench-engine DAY 5 engine | publish (separate processes), interleaved
#   publish-same   fh-bench-publish DAY 5: publishing off and on in one process on one segment
#   callgrind      instructions in fh_engine_apply_blocks, engine and publish, 2M / 8000 day (run once)
#
# Environment: FH_BENCH_DIR keeps the generated days (default /tmp/fh-shm-bench). Days: 20,000,000
# messages / 8,000 instruments / seed 1 (as `fh bench engine`), and 2,000,000 / 8,000 / seed 1.
# It builds nothing: `. .venv/bin/activate && python -c "import handler._native"` first.
set -euo pipefail
ROUNDS=${1:-3}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
B=$(ls -td "$ROOT"/build/cp3*/native/bench | head -n1)
DIR=${FH_BENCH_DIR:-/tmp/fh-shm-bench}
FH=${FH:-$ROOT/.venv/bin/fh}
PY=${PY:-$ROOT/.venv/bin/python}
mkdir -p "$DIR"
BIG=$DIR/day-20000000-8000-s1.itch
SMALL=$DIR/day-2000000-8000-s1.itch
[[ -s $BIG ]] || "$FH" synth itch "$BIG" --messages 20000000 --instruments 8000 --seed 1
[[ -s $SMALL ]] || "$FH" synth itch "$SMALL" --messages 2000000 --instruments 8000 --seed 1

WRITER=
cleanup() {
    [[ -z $WRITER ]] || { kill -INT "$WRITER" 2>/dev/null || true; wait "$WRITER" 2>/dev/null || true; }
    rm -f /dev/shm/fh-shmbench-$$ /dev/shm/fh-shmbench-$$.wake "$DIR/ready.$$"
}
trap cleanup EXIT
label() { sed "s/^{/{\"bench\": \"$1\", /"; }
joinable() { until "$B/shm_torture_reader" "/dev/shm/fh-shmbench-$$" info >/dev/null 2>&1; do sleep 0.05; done; }
head_of() { "$B/shm_torture_reader" "/dev/shm/fh-shmbench-$$" info | sed 's/.*"head": \([0-9]*\).*/\1/'; }

echo "# $(date -u +%FT%TZ) $(uname -r), $(nproc) CPUs, load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# ---- readers against a held segment (idle writer) ----
taskset -c 0 "$FH" publish --itch "$BIG" --name "shmbench-$$" --hold --ready-file "$DIR/ready.$$" 2>/dev/null &
WRITER=$!
until [[ -e $DIR/ready.$$ ]]; do sleep 0.1; done
for r in $(seq "$ROUNDS"); do
    taskset -c 1 "$B/fh-bench-shm-read" "/dev/shm/fh-shmbench-$$" --snapshots 1000000 | label read-idle
    if [[ -f $ROOT/handler/shm.py ]]; then
        (cd "$ROOT" && taskset -c 1 "$PY" native/bench/shm_py_snapshot.py "/dev/shm/fh-shmbench-$$" 200000 10) |
            label py-idle
    fi
done
cleanup
WRITER=

# ---- readers while the writer writes ----
for r in $(seq "$ROUNDS"); do
    taskset -c 0 "$FH" publish --itch "$BIG" --name "shmbench-$$" --loop 4 2>/dev/null &
    WRITER=$!
    joinable
    until (($(head_of) > 2000000)); do sleep 0.05; done
    taskset -c 1 "$B/fh-bench-shm-read" "/dev/shm/fh-shmbench-$$" --snapshots 1000000 | label read-busy
    cleanup
    WRITER=
done

# ---- wake-up latency ----
for r in $(seq "$ROUNDS"); do
    "$B/fh-bench-wake" --wakes 2000 | label wake
done

# ---- publishing cost ----
for r in $(seq "$ROUNDS"); do
    for m in engine publish; do
        taskset -c 1 "$B/fh-bench-engine" "$BIG" 5 "$m" | label "$m"
    done
    taskset -c 1 "$B/fh-bench-publish" "$BIG" 5 | label publish-same
done

# ---- instruction counts (repeatable) ----
CG=$DIR/fh-bench-engine.cg.$$
cp "$B/fh-bench-engine" "$CG"
for m in engine publish; do
    n=$(valgrind --tool=callgrind --toggle-collect=fh_engine_apply_blocks --callgrind-out-file=/dev/null \
            "$CG" "$SMALL" 1 "$m" 2>&1 >/dev/null | sed -n 's/^==[0-9]*== Collected : *\([0-9]*\).*/\1/p')
    echo "{\"bench\": \"callgrind\", \"mode\": \"$m\", \"messages\": 2000000, \"instructions\": $n, \"per_message\": $(awk "BEGIN{printf \"%.2f\", $n/2000000}")}"
done
rm -f "$CG"
