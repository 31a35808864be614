#!/usr/bin/env bash
# Set up (scripts/setup.sh), then run every test: the C test programs (plain and under ASan + UBSan) and
# the Python suite. Beyond setup.sh (the demo does not pay for these), it installs what the Spark test
# (tests/test_history_spark.py) runs, each only when missing, so a second run installs nothing: Java
# (Debian's openjdk-17-jre-headless, as root) and pyspark into .venv (a ~450 MB download, about a minute).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

# The Ansible converge test (tests/test_ansible.py) runs in a Debian root that debootstrap builds once and
# tests/ansible/bookworm_root.py caches (as root, /var/cache/fh-test). Where none is cached, the build (about a
# minute and a half, mostly downloads) starts now, beside the installs and the C tests below, and the test waits
# for it (a lock) instead of building it inside pytest. Only for the whole suite (no pytest arguments), so that a
# chosen test starts nothing it may not need. Its output goes to $TMPDIR/fh-test-root.log; if it fails, the test
# builds again and says why.
if [[ $# -eq 0 && $(id -u) -eq 0 ]] && command -v debootstrap >/dev/null; then
    python tests/ansible/bookworm_root.py >/dev/null 2>"${TMPDIR:-/tmp}/fh-test-root.log" &
fi

# What the Spark test needs is installed beside the C tests (which use neither), and pytest starts once it is in:
# its output is printed then (a failure stops the script there, as before).
spark_log=$(mktemp)
(
    # Spark 4 runs on Java 17 or later. Without root the Spark test skips (its reason is printed at the end).
    JAVA_PACKAGE=openjdk-17-jre-headless
    if ! dpkg-query -W -f='${Status}' "$JAVA_PACKAGE" 2>/dev/null | grep -q "install ok installed"; then
        if [[ $(id -u) -ne 0 ]]; then
            echo "test: missing Debian package: $JAVA_PACKAGE (tests/test_history_spark.py skips); run this script as root, or: sudo apt-get install $JAVA_PACKAGE" >&2
        else
            echo "test: installing $JAVA_PACKAGE"
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -qq
            apt-get install -y -qq --no-install-recommends "$JAVA_PACKAGE" >/dev/null
        fi
    fi
    # The version docs/history.md says was run; the stamp (as setup.sh's) records what .venv has.
    SPARK_REQ="pyspark==4.3.0"
    stamp=.venv/.fh-test-deps
    if [[ ! -f $stamp || $(cat "$stamp") != "$SPARK_REQ" ]]; then
        echo "test: installing $SPARK_REQ into .venv"
        .venv/bin/python -m pip install -q "$SPARK_REQ"
        echo "$SPARK_REQ" > "$stamp"
    fi
) >"$spark_log" 2>&1 &
spark_pid=$!

build=$(ls -d build/cp3* 2>/dev/null | head -n 1)
echo "== C tests ($build; ${SECONDS} s since the start)"
meson test -C "$build" --print-errorlogs --no-rebuild -q || meson test -C "$build" --print-errorlogs

echo "== C tests under AddressSanitizer + UndefinedBehaviorSanitizer (${SECONDS} s since the start)"
if [[ ! -d build-asan ]]; then
    meson setup build-asan -Dbuildtype=debug -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
fi
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
    meson test -C build-asan --print-errorlogs

if ! wait "$spark_pid"; then
    cat "$spark_log" >&2
    echo "test: installing what the Spark test needs failed (above)" >&2
    exit 1
fi
cat "$spark_log"
rm -f "$spark_log"
echo "== Python tests (${SECONDS} s since the start)"
# The whole suite on two workers (pytest-xdist, --dist loadfile: each file on one worker, its module fixtures set up
# once): it waits on subprocesses, servers and timeouts more than it computes, and ran in 21 minutes on one worker,
# 12.5 on two (2 CPUs). Tests marked solo (a paced feed that must lose nothing) run while the other worker waits
# (tests/conftest.py). FH_TEST_WORKERS=1 runs it on one; with pytest arguments (a chosen test) it runs on one too.
workers=${FH_TEST_WORKERS:-2}
xdist=()
if [[ $# -eq 0 && $workers -gt 1 ]]; then
    xdist=(-n "$workers" --dist loadfile)
fi
exec python -m pytest -q -rs --durations=25 "${xdist[@]}" "$@"   # -rs: every skip with its reason; the 25 slowest tests
