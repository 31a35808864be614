#!/usr/bin/env bash
# Coverage-guided fuzzing of the C decoders (native/fuzz, libFuzzer under ASan + UBSan).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     # default: 15 s each, every target (net mold feed book shm journal snapshot jfile)
#
# Installs clang-14 and libclang-rt-14-dev (Debian) when missing, builds the targets in build-fuzz (clang,
# -Dfuzz=enabled, -Db_sanitize=address,undefined), makes the seed corpora (scripts/fuzz_seeds.py, from
# pcaps/ and ../shared/data/real when present) in build-fuzz/corpus/TARGET, then runs each target for
# SECONDS with its regression inputs (native/fuzz/regress/TARGET) as further seeds. New inputs that widen
# coverage stay in build-fuzz/corpus (kept between runs). A crash, a broken invariant, a leak or an input
# that runs longer than FUZZ_TIMEOUT seconds (default 10) stops that target and leaves the input in
# build-fuzz/artifacts/: the script ends with exit 1 and names it. To replay one:
#   build-fuzz/native/fuzz/fuzz_TARGET FILE
# and once fixed, keep it: cp FILE native/fuzz/regress/TARGET/WHAT-IT-TESTS (run by `meson test --suite fuzz`).
#
# FUZZ_SEED=N fixes libFuzzer's seed: the same inputs in the same order on every run (up to the time limit),
# so that a failure is reproduced by the same command; unset, every run explores from a new seed.
# CI size: `FUZZ_SEED=1 scripts/fuzz.sh 10` runs nine targets, two at a time on two CPUs (FUZZ_JOBS), in about
# two minutes, build included (.ci/run does: a gate on regressions, reproducible; a wider search is a longer run
# without a seed).
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-15}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(net mold feed book shm journal snapshot soupbin jfile)
[[ $secs =~ ^[0-9]+$ && $secs -gt 0 ]] || { echo "fuzz.sh: SECONDS must be a positive integer, not '$secs'" >&2; exit 2; }
for t in "${targets[@]}"; do
    [[ -f native/fuzz/fuzz_$t.c ]] || { echo "fuzz.sh: no target '$t' (there are: net mold feed book shm journal snapshot soupbin jfile)" >&2; exit 2; }
done

CC_FUZZ=${CC_FUZZ:-clang-14}
if ! command -v "$CC_FUZZ" >/dev/null || ! dpkg-query -W -f='${Status}' libclang-rt-14-dev 2>/dev/null | grep -q "install ok installed"; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "fuzz.sh: clang with libFuzzer is missing: sudo apt-get install clang-14 libclang-rt-14-dev" >&2
        exit 1
    fi
    echo "fuzz.sh: installing clang-14 libclang-rt-14-dev"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends clang-14 libclang-rt-14-dev >/dev/null
fi

[[ -x .venv/bin/meson ]] && export PATH=$PWD/.venv/bin:$PATH
command -v meson >/dev/null || { echo "fuzz.sh: meson is missing: run scripts/setup.sh first" >&2; exit 1; }
if [[ ! -f build-fuzz/build.ninja ]]; then
    CC=$CC_FUZZ meson setup build-fuzz -Dfuzz=enabled -Db_sanitize=address,undefined -Db_lundef=false \
        -Db_ndebug=false -Dbuildtype=debugoptimized -Dwerror=false >/tmp/fh-fuzz-setup.$$.log 2>&1 ||
        { cat /tmp/fh-fuzz-setup.$$.log >&2; echo "fuzz.sh: meson setup build-fuzz failed (above)" >&2; exit 1; }
    rm -f /tmp/fh-fuzz-setup.$$.log
fi
ninja -C build-fuzz $(printf 'native/fuzz/fuzz_%s ' "${targets[@]}") >build-fuzz/fuzz-build.log 2>&1 ||
    { tail -30 build-fuzz/fuzz-build.log >&2; echo "fuzz.sh: building the targets failed (above)" >&2; exit 1; }

mkdir -p build-fuzz/corpus build-fuzz/artifacts
for t in "${targets[@]}"; do
    if [[ ! -d build-fuzz/corpus/$t ]]; then
        python3 scripts/fuzz_seeds.py build-fuzz/corpus >/dev/null
        break
    fi
done

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
seed=()
if [[ -n ${FUZZ_SEED:-} ]]; then
    [[ $FUZZ_SEED =~ ^[0-9]+$ ]] || { echo "fuzz.sh: FUZZ_SEED must be a number, not '$FUZZ_SEED'" >&2; exit 2; }
    seed=(-seed="$FUZZ_SEED")
fi
# The targets run side by side, FUZZ_JOBS at a time (default: one a CPU); each still runs SECONDS of its own.
# Their lines are printed in the targets' order once all have ended.
jobs=${FUZZ_JOBS:-$(nproc)}
[[ $jobs =~ ^[0-9]+$ && $jobs -gt 0 ]] || { echo "fuzz.sh: FUZZ_JOBS must be a positive integer, not '$jobs'" >&2; exit 2; }
run_target() {
    local t=$1 log=build-fuzz/artifacts/$1.log res=build-fuzz/artifacts/$1.result regress=()
    mkdir -p build-fuzz/corpus/$t
    [[ -d native/fuzz/regress/$t ]] && regress=(native/fuzz/regress/$t)
    if build-fuzz/native/fuzz/fuzz_$t -max_total_time="$secs" -timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb=2048 \
            -print_final_stats=1 -artifact_prefix=build-fuzz/artifacts/$t- "${seed[@]}" \
            build-fuzz/corpus/$t "${regress[@]}" >"$log" 2>&1; then
        local runs cov
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
        echo "fuzz.sh: $t: ok, $runs inputs in ${secs}s, $cov edges, corpus $(ls build-fuzz/corpus/$t | wc -l)" >"$res"
    else
        local art
        art=$(grep -o "Test unit written to [^ ]*" "$log" | tail -1 | sed 's/Test unit written to //')
        { echo "fuzz.sh: $t: FAILED: $(grep -m1 -E 'ERROR|invariant failed|runtime error' "$log" || tail -1 "$log")"
          echo "fuzz.sh: $t: input ${art:-(none)}; log $log"; } >"$res"
        touch "build-fuzz/artifacts/$t.failed"
    fi
}
running=0
for t in "${targets[@]}"; do
    rm -f "build-fuzz/artifacts/$t.failed" "build-fuzz/artifacts/$t.result"
    if ((running >= jobs)); then
        wait -n || true
        running=$((running - 1))
    fi
    run_target "$t" &
    running=$((running + 1))
done
wait
failed=()
for t in "${targets[@]}"; do
    if [[ -f build-fuzz/artifacts/$t.failed || ! -f build-fuzz/artifacts/$t.result ]]; then
        cat "build-fuzz/artifacts/$t.result" >&2 2>/dev/null || echo "fuzz.sh: $t: FAILED: no result (log build-fuzz/artifacts/$t.log)" >&2
        failed+=("$t")
    else
        cat "build-fuzz/artifacts/$t.result"
    fi
done
if ((${#failed[@]})); then
    echo "fuzz.sh: failed: ${failed[*]}" >&2
    exit 1
fi
