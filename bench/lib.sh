# bench/lib.sh: sourced by the benchmark scripts (after they set ROOT and define die).
# bench_program NAME: the benchmark program NAME as meson built it (the first build/cp3*/native/bench/NAME), or
# the script's die saying how to build it.
bench_program() {
    local c
    shopt -s nullglob
    c=("$ROOT"/build/cp3*/native/bench/"$1")
    shopt -u nullglob
    ((${#c[@]})) || die "no $1 under $ROOT/build/cp3*/native/bench; build it with: bash scripts/setup.sh"
    echo "${c[0]}"
}
