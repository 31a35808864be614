#!/usr/bin/env bash
# Make this checkout ready: Debian packages (as root, only those missing), a virtualenv in .venv with
# the Python dependencies, and an editable build of fh (C core + cffi binding). Safe to run again: it only
# does what is missing. Works from a fresh Debian 12 with only python3 and git and root's default PATH: every
# tool the demo and the tests run comes from this list or from .venv, but for the Spark test's Java and pyspark,
# which scripts/test.sh installs (the demo does not need them).
set -euo pipefail
cd "$(dirname "$0")/.."

# gcc..libdpdk-dev: the build (g++: the C++ compile tests of fh/shm.h); tshark: pcaps checked by an independent dissector; iproute2: network namespaces
# and veth pairs of the live tests; valgrind: callgrind figures (fh bench --callgrind and its tests); systemd:
# systemd-analyze checks the unit file; debootstrap: the root the Ansible roles converge into;
# nats-server: the fh gateway tests run a real NATS cluster; libfabric-dev: fh-replicate (tcp provider in tests);
# libssl-dev: fh-replicate's HMAC-SHA256 on the witness datagrams (libcrypto; libdpdk-dev already pulls it in, named
# here since fh-replicate needs it of its own).
APT_PACKAGES=(gcc g++ libc6-dev pkg-config python3-venv python3-dev git libdpdk-dev tshark iproute2 valgrind systemd debootstrap nats-server libfabric-dev libssl-dev)

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "setup: missing Debian packages: ${missing[*]}; run this script as root, or: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
    echo "setup: creating .venv"
    "$PY" -m venv .venv
fi
VPY=.venv/bin/python
# The editable build runs meson and ninja from the venv (at install and again on import): they must be on PATH.
export PATH="$PWD/.venv/bin:$PATH"
stamp=.venv/.fh-deps
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"  # either changes what is installed
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    echo "setup: installing Python packages into .venv"
    "$VPY" -m pip install -q --upgrade pip
    # Editable installs rebuild the C core on import, so the build tools live in the venv itself.
    "$VPY" -m pip install -q "meson-python>=0.15" "meson>=1.1" ninja "cffi>=1.15" "numpy>=1.24" \
        "pytest>=7" "pytest-xdist>=3" "scapy>=2.5" "pyroute2>=0.7" "hypothesis>=6" "ansible>=11" "ansible-lint>=25" \
        "pyarrow>=14" "duckdb>=1.0" "nats-py>=2.6" \
        "rich>=13" "matplotlib>=3.6"  # fh history, fh query, fh gateway; terminal tables; --plot
    "$VPY" -m pip install -q --no-build-isolation --no-deps -e .
    echo "$want" > "$stamp"
fi
# Build now (an editable install also rebuilds on import when sources change).
"$VPY" -c "import handler._native" >/dev/null
