#!/usr/bin/env bash
# Set up (scripts/setup.sh), then run every test: the C test programs (plain and under ASan + UBSan) and
# the Python suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

build=$(ls -d build/cp3* 2>/dev/null | head -n 1)
echo "== C tests ($build)"
meson test -C "$build" --print-errorlogs --no-rebuild -q || meson test -C "$build" --print-errorlogs

echo "== C tests under AddressSanitizer + UndefinedBehaviorSanitizer"
if [[ ! -d build-asan ]]; then
    meson setup build-asan -Dbuildtype=debug -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
fi
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
    meson test -C build-asan --print-errorlogs

echo "== Python tests"
exec python -m pytest -q -rs "$@"   # -rs: every skip with its reason
